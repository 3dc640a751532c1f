"""The IPTC "made by a trained algorithm" marker, as an XMP packet, and a reader for it.

Our own notice (``metadata.py``) is plain text that people read; exiftool, photo managers and
C2PA/IPTC-aware viewers look instead for the IPTC Digital Source Type in XMP, with
``trainedAlgorithmicMedia`` being the code for media made by a trained model. The same packet
goes into PNG (iTXt ``XML:com.adobe.xmp``), JPEG (APP1) and MP4/MOV (the XMP ``uuid`` box).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from intracoder import __version__
# write_image treats a text entry under this key as the packet, so the one text dict that
# convert hands the writer carries both our notice and the XMP.
from intracoder.media.image import XMP_TEXT_KEY  # noqa: F401 - re-exported

IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
TRAINED_ALGORITHMIC_MEDIA = ("http://cv.iptc.org/newscodes/digitalsourcetype/"
                             "trainedAlgorithmicMedia")

_RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_DC_NS = "http://purl.org/dc/elements/1.1/"
_XMP_NS = "http://ns.adobe.com/xap/1.0/"
# Larger packets are not ours: reading stops there rather than parse megabytes.
_MAX_PACKET = 1 << 20

_TEMPLATE = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="{tool}">
 <rdf:RDF xmlns:rdf="{rdf}">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="{iptc}"
    xmlns:dc="{dc}"
    xmlns:xmp="{xmp}">
   <Iptc4xmpExt:DigitalSourceType>{source_type}</Iptc4xmpExt:DigitalSourceType>
   <xmp:CreatorTool>{tool}</xmp:CreatorTool>
   <dc:description>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">{description}</rdf:li>
    </rdf:Alt>
   </dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def xmp_packet(model_id: str) -> bytes:
    """A complete XMP packet (UTF-8) saying the file is trainedAlgorithmicMedia made by
    intracoder with ``model_id``; the description is the same notice as the plain tags."""
    from intracoder.provenance.metadata import notice

    tool = f"intracoder {__version__}"
    text = _TEMPLATE.format(tool=escape(tool, {'"': "&quot;"}), rdf=_RDF_NS, iptc=IPTC_EXT_NS,
                            dc=_DC_NS, xmp=_XMP_NS, source_type=TRAINED_ALGORITHMIC_MEDIA,
                            description=escape(notice(model_id)))
    return text.encode("utf-8")


def _parse(packet: bytes | str) -> ET.Element | None:
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if not packet or len(packet) > _MAX_PACKET:
        return None
    # XMP forbids DTDs; refusing them keeps entity-expansion tricks out of the parser.
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        return None
    try:
        return ET.fromstring(packet.rstrip(b"\x00 \t\r\n"))
    except ET.ParseError:
        return None


def _property(root: ET.Element, ns: str, name: str) -> str | None:
    """A simple property: an attribute of rdf:Description, an element's text, an element's
    rdf:resource, or the first rdf:li of an Alt/Seq/Bag; all four spellings are valid RDF."""
    tag = f"{{{ns}}}{name}"
    for desc in root.iter(f"{{{_RDF_NS}}}Description"):
        if tag in desc.attrib:
            return desc.attrib[tag].strip()
        for element in desc.findall(tag):
            resource = element.get(f"{{{_RDF_NS}}}resource")
            if resource:
                return resource.strip()
            item = element.find(f".//{{{_RDF_NS}}}li")
            text = item.text if item is not None else element.text
            if text and text.strip():
                return text.strip()
    return None


def read_xmp_fields(packet: bytes | str | None) -> dict[str, str]:
    """``digital_source_type``, ``creator_tool`` and ``description`` from a packet, for those
    present; {} for a packet that does not parse."""
    root = _parse(packet) if packet else None
    if root is None:
        return {}
    fields = {"digital_source_type": _property(root, IPTC_EXT_NS, "DigitalSourceType"),
              "creator_tool": _property(root, _XMP_NS, "CreatorTool"),
              "description": _property(root, _DC_NS, "description")}
    return {key: value for key, value in fields.items() if value}


def read_digital_source_type(packet: bytes | str | None) -> str | None:
    """The IPTC Digital Source Type URI a packet states, or None."""
    return read_xmp_fields(packet).get("digital_source_type")


def is_intracoder_marker(fields: dict[str, str]) -> bool:
    """The packet says trainedAlgorithmicMedia and names intracoder as its maker. Other
    generators write the same source type; verify's verdict is about intracoder's marks."""
    named = " ".join((fields.get("creator_tool", ""), fields.get("description", ""))).lower()
    return (fields.get("digital_source_type") == TRAINED_ALGORITHMIC_MEDIA
            and "intracoder" in named)
