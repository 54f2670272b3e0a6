"""dealscore: the command line, the composition root that wires model/, training/ and service/."""
