# -*- coding: utf-8 -*-
# Copyright: (c) 2026 multihome developers
# MIT License (see https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: to_toml
short_description: A dictionary as a multihome TOML config file
version_added: "0.1.0"
author:
  - multihome contributors
description:
  - Writes a dictionary with the structure of multihome's config file as TOML. Tables become
    C([a.b]) headers, each with its plain keys before its sub-tables.
  - Fails on a null value (TOML has none).
options:
  _input:
    description: The configuration.
    type: dict
    required: true
  header:
    description: A comment for the top of the file, one C(#) line per line.
    type: str
"""

EXAMPLES = r"""
- name: Write multihome's config
  ansible.builtin.copy:
    content: "{{ multihome_config | multihome.routing.to_toml(header='managed by Ansible') }}"
    dest: /etc/multihome/multihome.toml
    owner: root
    group: root
    mode: "0600"
"""

RETURN = r"""
_value:
  description: The TOML document.
  type: str
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.multihome.routing.plugins.module_utils.toml import TomlError, to_toml


def _to_toml(config, header=None):
    try:
        return to_toml(config, header)
    except TomlError as error:
        raise AnsibleFilterError(to_native(error))


class FilterModule(object):
    def filters(self):
        return {"to_toml": _to_toml}
