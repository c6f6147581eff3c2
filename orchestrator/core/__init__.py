"""The control plane: plans, the planner, the dispatcher, sessions, the Python facade."""
