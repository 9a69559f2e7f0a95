"""The `pictext` command by area: each module registers its subcommands (`register`) and parses and calls the
library; none has logic of its own."""
