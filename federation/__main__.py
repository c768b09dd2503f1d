"""``python -m federation``: the ``zfed`` command."""

from federation.cli import main

main(prog_name="zfed")
