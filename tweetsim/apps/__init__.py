"""Layer 5: what users run. The `tweetsim` command and its subcommands, and the web app."""
