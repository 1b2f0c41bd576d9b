"""Active content in an uploaded PDF: found, and removed from what offset writes.

A sheet PDF is artwork for a cutter. Scripts (/JavaScript name tree, JavaScript
actions), actions that run on open or on events (/OpenAction, /AA), actions that start
programs or open embedded documents (/Launch, /GoToE) and embedded files (the
/EmbeddedFiles name tree, file attachment annotations) have no place in it, and the
output is served from this site to be opened by its users. Plain links and
destinations stay.
"""
from __future__ import annotations

from collections import Counter

from pypdf.generic import ArrayObject, DictionaryObject, NameObject

DANGEROUS_ACTIONS = {"/JavaScript", "/Launch", "/GoToE", "/ImportData", "/SubmitForm",
                     "/Rendition", "/RichMediaExecute"}
DANGEROUS_ANNOTATIONS = {"/FileAttachment", "/RichMedia", "/Movie", "/Sound", "/Screen"}
CATALOG_KEYS = ("/OpenAction", "/AA")
NAME_TREES = ("/JavaScript", "/EmbeddedFiles")
MAX_ACTION_CHAIN = 100  # /Next chains are followed this far


def _resolve(value):
    return value.get_object() if value is not None else None


def _action_kinds(action, limit: int = MAX_ACTION_CHAIN) -> set[str]:
    """The /S of an action and of those chained after it with /Next."""
    kinds, todo = set(), [action]
    while todo and limit > 0:
        limit -= 1
        item = _resolve(todo.pop())
        if isinstance(item, ArrayObject):
            todo.extend(item)
        elif isinstance(item, DictionaryObject):
            if item.get("/S") is not None:
                kinds.add(str(item["/S"]))
            if "/Next" in item:
                todo.append(item["/Next"])
    return kinds


def _annotation_problem(annotation) -> str | None:
    annotation = _resolve(annotation)
    if not isinstance(annotation, DictionaryObject):
        return None
    subtype = str(annotation.get("/Subtype", ""))
    if subtype in DANGEROUS_ANNOTATIONS:
        return subtype
    dangerous = _action_kinds(annotation.get("/A")) & DANGEROUS_ACTIONS
    return sorted(dangerous)[0] if dangerous else None


def _clean_page(page, found: Counter, remove: bool) -> None:
    if "/AA" in page:
        found["/AA"] += 1
        if remove:
            del page["/AA"]
    annotations = _resolve(page.get("/Annots"))
    if not isinstance(annotations, ArrayObject):
        return
    kept = ArrayObject()
    for annotation in annotations:
        problem = _annotation_problem(annotation)
        resolved = _resolve(annotation)
        if problem:
            found[problem] += 1
            continue
        if isinstance(resolved, DictionaryObject) and "/AA" in resolved:
            found["/AA"] += 1
            if remove:
                del resolved["/AA"]
        kept.append(annotation)
    if remove and len(kept) != len(annotations):
        page[NameObject("/Annots")] = kept


def _clean_catalog(root, found: Counter, remove: bool) -> None:
    for key in CATALOG_KEYS:
        if key in root:
            found[key] += 1
            if remove:
                del root[key]
    names = _resolve(root.get("/Names"))
    if isinstance(names, DictionaryObject):
        for key in NAME_TREES:
            if key in names:
                found[key] += 1
                if remove:
                    del names[key]
    form = _resolve(root.get("/AcroForm"))
    if isinstance(form, DictionaryObject) and "/XFA" in form:
        found["/XFA"] += 1  # XFA forms carry their own scripts
        if remove:
            del form["/XFA"]


def active_content(root, pages, *, remove: bool) -> Counter:
    """What active content `root` (the catalog) and `pages` hold; removed when asked."""
    found: Counter = Counter()
    _clean_catalog(_resolve(root), found, remove)
    for page in pages:
        _clean_page(page, found, remove)
    return found


def describe(found: Counter) -> str:
    parts = ", ".join(f"{key[1:]}" + (f" x{n}" if n > 1 else "")
                      for key, n in sorted(found.items()))
    return f"removed active content from the PDF ({parts})"
