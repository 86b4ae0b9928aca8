"""The exploration loop: UCB tree search over INR configurations, agents, memory files and the driver."""
