"""Run the tfconf command line from a checkout: ``python cli.py train configs/lenet_mnist.yaml``."""

from tfconf.cli import main

if __name__ == "__main__":
    main()
