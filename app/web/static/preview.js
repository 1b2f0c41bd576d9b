// The sheet preview: slots, registration marks and skipped slots drawn from /api/layouts,
// in the engine's own pixel coordinates (300 ppi, origin top-left).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  Object.entries(attrs).forEach(([key, value]) => node.setAttribute(key, value));
  return node;
}

// Sheets and pages as the engine plans them: single-sided and double-sided cards fill
// sheets separately; every sheet has a back page unless only fronts are printed.
function sheetPlan(layout, skip, singles, doubles, onlyFronts) {
  const free = layout.cards_per_sheet - [...skip].filter((s) => s < layout.cards_per_sheet).length;
  const sheets = free > 0 ? Math.ceil(singles / free) + Math.ceil(doubles / free) : 0;
  return { free, sheets, pages: sheets * (onlyFronts ? 1 : 2) };
}

function drawPreview(svg, paper, layout, skip, onToggle) {
  const [width, height] = paper.page_px;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.dataset.paper = layout.paper_size;
  svg.dataset.card = layout.card_size;
  svg.append(svgEl("rect", { x: 0, y: 0, width, height, class: "page" }));
  paper.marks_px.forEach(([x0, y0, x1, y1]) => {
    svg.append(svgEl("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "mark" }));
  });
  layout.slots_px.forEach(([x, y, w, h], index) => {
    const skipped = skip.has(index);
    const group = svgEl("g", { class: skipped ? "slot skipped" : "slot", "data-slot": index });
    group.append(svgEl("rect", { x, y, width: w, height: h }));
    const label = svgEl("text", { x: x + w / 2, y: y + h / 2, "text-anchor": "middle",
      "dominant-baseline": "middle" });
    label.textContent = skipped ? `${index} skipped` : String(index);
    group.append(label);
    group.addEventListener("click", () => onToggle(index));
    svg.append(group);
  });
}
