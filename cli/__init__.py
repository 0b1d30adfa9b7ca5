"""The `tunepipe` command line: the top layer, over flows/ and the tunepipe library."""
