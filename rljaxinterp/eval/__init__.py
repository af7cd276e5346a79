"""How good is an agent, judged exactly: matches against reference players, and the
tic-tac-toe minimax solver with an exhaustive check of every opponent line."""
