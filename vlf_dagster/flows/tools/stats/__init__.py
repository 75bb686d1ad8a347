"""SiLK's rwuniq, rwstats and rwcount: bins by key, top-N lists and traffic over time, and their
text output.  The package re-exports nothing: import the names from their modules."""
