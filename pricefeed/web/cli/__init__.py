"""`flask pricefeed …`: the commands, the status report they print, the app `serve` runs."""
