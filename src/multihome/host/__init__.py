"""What lives on the machine: the commands' work (operations), the state file and its lock,
confirm-or-revert, installed files and the safe file primitives."""
