"""The built-in test network: the article's experiment in network namespaces."""

# The scenario names and the NIC limit, for the command line without importing the lab
# (scenarios.py checks that they match its builders).
SCENARIO_NAMES = ("seed", "two-isp")
MAX_NICS = 8
