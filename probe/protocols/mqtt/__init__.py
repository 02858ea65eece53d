"""MQTT 3.1.1 and 5: packets built and parsed by hand (`codec.py`), the broker collectors
(`collectors.py`: endpoints, logins, subscriptions) and the MQTT checks (`checks.py`)."""
