# Entry point of the `launcher` console script.  `launcher run` first tries
# the warm fast path (stdlib only); everything else goes through click.
import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        from launcher import _fastrun

        _fastrun.try_fast(args)
    from launcher.execute import guard_stdio

    guard_stdio()
    from launcher.cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":
    main()
