"""The Ray Serve application: the HTTP gateway, the one engine replica and the model replicas.
Only this package (with the training and research runners) imports Ray."""
