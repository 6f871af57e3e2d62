"""The built-in test network: the article's experiment in network namespaces."""
