"""One module per scenario; each measures one run of one server and returns plain numbers."""
