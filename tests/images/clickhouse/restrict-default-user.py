"""Build step: limit the packaged passwordless `default` user to loopback.

Debian's users.xml lets `default` (empty password) in from ::/0. The networks element is rewritten with a real
XML parser (a text substitution would also hit the example in the comments above it).
"""
import xml.etree.ElementTree as ET

PATH = "/etc/clickhouse-server/users.xml"
tree = ET.parse(PATH)
networks = tree.getroot().find("users/default/networks")
if networks is None:
    raise SystemExit(f"{PATH}: users/default/networks not found")
for child in list(networks):
    networks.remove(child)
for address in ("::1", "127.0.0.1"):
    ET.SubElement(networks, "ip").text = address
tree.write(PATH, encoding="utf-8", xml_declaration=True)
