"""Exports: what leaves the evidence store for an auditor or a GRC tool.

The audit package (:mod:`exports.package`) and its formats (:mod:`exports.formats`,
behind the :class:`~exports.exporter.Exporter` interface and the registry of
:mod:`exports.registry`), the HTML report, OSCAL documents, the Statement of
Applicability table, and offline package verification (:mod:`exports.verify`).

Exports read the store (``store`` — persistence and queries only — never imports
``exports``), the domain (``core``) and the mappings; never the collector.
"""
