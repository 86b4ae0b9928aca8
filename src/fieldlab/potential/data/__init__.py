"""Loading the potential corpus for training: datasets, scaling, exact symmetries and analytic priors."""
