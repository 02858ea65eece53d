"""HTTP and HTTPS: requests over the device context (`wire.py`), the web collectors
(`collectors.py`: listeners, visits, credential trials) and the HTTP checks (`checks.py`)."""
