"""``python -m cli``: the same command as the ``llm-gateway`` script."""

from cli import main

if __name__ == "__main__":
    main()
