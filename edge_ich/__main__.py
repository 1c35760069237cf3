from edge_ich.cli import entry

entry()
