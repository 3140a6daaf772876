"""One module per command group; each command is parse -> one API call -> render."""
