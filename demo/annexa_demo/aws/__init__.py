"""The demo AWS estates (:mod:`annexa_demo.aws.estate`) and the local fake of what moto
lacks (:mod:`annexa_demo.aws.fakes`)."""
