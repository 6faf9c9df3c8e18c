"""The "bill day" load test: the Locust scenario and its data preparation and checks."""
