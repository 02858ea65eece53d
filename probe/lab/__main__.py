"""`python -m probe.lab`: the lab commands alone (the background fleet process runs this)."""

from probe.lab.cli import lab_group

if __name__ == "__main__":
    lab_group()(prog_name="iotprobe lab")
