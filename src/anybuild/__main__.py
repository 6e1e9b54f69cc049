"""`python -m anybuild`: the ordinary exit, so wrappers (``-m cProfile``, coverage) see the end of the run.

The installed ``anybuild`` program is :func:`anybuild.cli.main.run`, which skips the interpreter's teardown.
"""

from anybuild.cli.main import main

if __name__ == "__main__":
    main()
