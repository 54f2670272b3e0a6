"""The domain core shared by training and the service: contract, features, scorer, profiles, artifact."""
