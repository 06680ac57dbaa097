"""The public endpoint's rules (who, from which page, how many, when): plain functions of the
request's environ, the configuration and the node; no Flask, no transport."""
