"""The view explorer: one self-contained HTML page per result set, to see which images zoom rescues.

It plays the part of the authors' ImageNet-Hard browser for any stored sweep. Per image: a thumbnail,
the true label, the 1-crop prediction, and the scale x anchor grid of right (green) and wrong (red)
views; a click on a cell shows that view, the exact crop the model saw (rendered again with the sweep's
renderer, `views.render_views`, in float64: PIL's pixels), and its stored top-5. Filters: solved only by
zoom-in, only by zoom-out, never solved, solved by 1-crop (`bounds._group_solved`, the groups of
SPEC section 3).

No server: the page opens from file:// . Thumbnails, labels and the grids are embedded in the page;
the crops of each image are one JPEG sprite (rows = scales, columns = anchors) in a folder next to
the page (`<page>_views/`), linked relatively and loaded only when a cell of that image is clicked,
so the page stays small however many views the grid has.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from zoomstudy.analysis import bounds, budget
from zoomstudy.views import ViewGrid

#: Images on a page by default: each one's crops are a JPEG sprite of (views) x crop^2 pixels (about
#: 2 MB for 324 views of 224 px), so the page of a large sweep shows its first images.
MAX_IMAGES = 100
FILTERS = {  # key -> label shown on the page
    "all": "all images", "zoom_in_only": "solved only by zoom-in", "zoom_out_only": "solved only by zoom-out",
    "never": "never solved", "one_crop": "solved by 1-crop",
}


def image_flags(correct: np.ndarray, grid: ViewGrid) -> dict[str, np.ndarray]:
    """bool [N] per filter of the page (FILTERS), from a correctness matrix [N, V]."""
    solved = bounds._group_solved(correct, grid)
    none = np.zeros(correct.shape[0], bool)
    zin, zout, z224 = (solved[g] if solved[g] is not None else none for g in ("zoom_in", "zoom_out", "zoom_224"))
    sv = grid.standard_view
    return {"all": ~none, "zoom_in_only": zin & ~zout & ~z224, "zoom_out_only": zout & ~zin & ~z224,
            "never": ~correct.any(axis=1), "one_crop": correct[:, sv] if sv is not None else none}


def _jpeg(array_hwc: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array_hwc).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_explorer(result_set, source, out_path: str | Path, *, max_images: int | None = MAX_IMAGES,
                   title: str | None = None) -> Path:
    """Write the explorer page of `result_set` (its images read again from `source`, the sweep's data
    source) to out_path, and the crops to out_path's `<stem>_views/` folder; returns the page's path.

    max_images: the first images only (default MAX_IMAGES; None: all). Images without a label are left out.
    """
    import torch

    from zoomstudy.data.labels import class_name
    from zoomstudy.data.source import load_sample
    from zoomstudy.report.examples import thumbnails
    from zoomstudy.views import pil_to_tensor, render_views

    out_path = Path(out_path)
    sv = budget.stored_views(result_set)
    grid = sv.grid
    n = len(sv.image_ids) if max_images is None else min(len(sv.image_ids), int(max_images))
    if n == 0:
        raise ValueError(f"{result_set.path}: no labelled image to explore")
    images = result_set.images().set_index("image_id")
    correct = sv.correct[:n]
    flags = image_flags(correct, grid)
    folder = out_path.parent / f"{out_path.stem}_views"
    folder.mkdir(parents=True, exist_ok=True)
    g, crop, n_s = grid.n_anchors, grid.crop, grid.n_scales
    classes: dict[int, str] = {}

    def name(c: int) -> int:
        classes.setdefault(int(c), class_name(int(c), names=result_set))
        return int(c)

    records = []
    for i in range(n):
        image_id = sv.image_ids[i]
        sample = load_sample(source, int(images.loc[image_id, "position"]))
        if sample.image is None or sample.image_id != image_id:
            raise ValueError(f"the source's image at position {images.loc[image_id, 'position']} is "
                             f"{sample.image_id!r}, the store says {image_id!r}: not the sweep's data")
        views = render_views(pil_to_tensor(sample.image), grid, dtype=torch.float64).to(torch.uint8)  # [V, 3, c, c]
        sprite = views.reshape(n_s, g, 3, crop, crop).permute(0, 3, 1, 4, 2).reshape(n_s * crop, g * crop, 3)
        sprite_file = folder / f"{i:05d}.jpg"
        sprite_file.write_bytes(_jpeg(sprite.numpy()))
        thumb = thumbnails([sample.image], 96)[0].permute(1, 2, 0).numpy()
        std = grid.standard_view
        records.append({
            "id": image_id, "labels": [name(c) for c in sv.labels[i]],
            "one_crop": None if std is None else name(sv.pred[i, std, 0]),
            "one_crop_ok": None if std is None else bool(correct[i, std]),
            "grid": "".join("1" if x else "0" for x in correct[i]),
            "top5": [[name(c) for c in sv.pred[i, v]] for v in range(grid.n_views)],
            "prob5": [[round(float(p), 4) for p in sv.prob[i, v]] for v in range(grid.n_views)],
            "flags": [k for k in FILTERS if flags[k][i]],
            "sprite": f"{folder.name}/{sprite_file.name}",
            "thumb": "data:image/jpeg;base64," + base64.b64encode(_jpeg(thumb, 85)).decode("ascii"),
        })
    info = result_set.settings["key"]
    data = {"scales": list(grid.scales), "grid": grid.grid, "crop": crop, "classes": {str(k): v for k, v in classes.items()},
            "images": records, "filters": FILTERS,
            "counts": {k: int(v.sum()) for k, v in flags.items()}}
    head = title or (f"View explorer: {info.get('model', {}).get('name', '?')} on "
                     f"{info.get('dataset', {}).get('name', '?')} ({n} images, {grid.n_views} views each)")
    page = _PAGE.replace("__TITLE__", html.escape(head)).replace("__DATA__", json.dumps(data).replace("</", "<\\/"))
    out_path.write_text(page, encoding="utf-8")
    return out_path


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:1rem 1.5rem;color:#222}
h1{font-size:1.3rem} .muted{color:#666}
#filters button{margin:0 .3rem .3rem 0;padding:.25rem .6rem;border:1px solid #999;background:#f4f4f4;border-radius:4px;cursor:pointer}
#filters button.on{background:#2b6cb0;color:#fff;border-color:#2b6cb0}
#layout{display:flex;gap:1.5rem;align-items:flex-start}
#list{flex:1 1 auto}
#panel{position:sticky;top:1rem;flex:0 0 auto;min-width:260px;border:1px solid #ccc;border-radius:6px;padding:.6rem}
.card{display:flex;gap:.8rem;border-bottom:1px solid #eee;padding:.5rem 0}
.card img.thumb{width:96px;height:96px}
.meta{font-size:.85rem;width:14rem}
.ok{color:#1a7f37} .bad{color:#c62828}
.vgrid{display:grid;gap:1px;background:#fff;align-self:flex-start}
.cell{width:9px;height:9px;cursor:pointer}
.cell.r{background:#2e9d4a} .cell.w{background:#d9534f} .cell.sel{outline:2px solid #000;z-index:1}
#crop{position:relative;overflow:hidden;background:#000;margin:.4rem 0}
#crop img{position:absolute;left:0;top:0}
#top5 td{padding:0 .4rem;font-size:.85rem}
</style></head><body>
<h1>__TITLE__</h1>
<p class="muted">Each grid: rows are the scales (top: smallest), columns the anchors (row-major: top-left to bottom-right).
Green: the view's top-1 is right; red: wrong. Click a cell to see the exact crop the model saw and its top-5.</p>
<div id="filters"></div>
<div id="layout"><div id="list"></div>
<div id="panel"><div id="pick" class="muted">Click a cell of a grid.</div>
<div id="viewname"></div><div id="crop"></div><table id="top5"></table></div></div>
<script id="data" type="application/json">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById('data').textContent);
const nA = D.grid * D.grid, nV = D.scales.length * nA;
const esc = t => String(t).replace(/[&<>"']/g, ch => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[ch]));
const cls = c => esc(D.classes[String(c)] || String(c));
let filter = 'all';
function drawFilters(){
  const box = document.getElementById('filters'); box.innerHTML = '';
  for (const [k, label] of Object.entries(D.filters)) {
    const b = document.createElement('button'); b.dataset.filter = k;
    b.textContent = label + ' (' + D.counts[k] + ')'; if (k === filter) b.className = 'on';
    b.onclick = () => { filter = k; drawFilters(); drawList(); }; box.appendChild(b);
  }
}
function viewName(v){ const s = Math.floor(v / nA), rc = v % nA; return 'LOC:' + Math.floor(rc / D.grid) + '_' + (rc % D.grid) + '_Size:' + D.scales[s]; }
function show(i, v, cell){
  const im = D.images[i], s = Math.floor(v / nA), a = v % nA;
  document.querySelectorAll('.cell.sel').forEach(e => e.classList.remove('sel')); if (cell) cell.classList.add('sel');
  document.getElementById('pick').innerHTML = esc(im.id) + ' (label: ' + im.labels.map(cls).join(', ') + ')';
  document.getElementById('viewname').innerHTML = '<b>' + viewName(v) + '</b> ' + (im.grid[v] === '1' ? '<span class="ok">&#10003; right</span>' : '<span class="bad">&#10007; wrong</span>');
  const box = document.getElementById('crop'); box.style.width = D.crop + 'px'; box.style.height = D.crop + 'px';
  let sp = document.getElementById('sprite');  // made on the first click: an <img> without a source is no image
  if (!sp) { sp = document.createElement('img'); sp.id = 'sprite'; sp.alt = 'the view'; box.appendChild(sp); }
  sp.dataset.view = String(v); sp.dataset.image = String(i);
  sp.style.left = (-a * D.crop) + 'px'; sp.style.top = (-s * D.crop) + 'px'; sp.src = im.sprite;
  const t = document.getElementById('top5'); t.innerHTML = '';
  im.top5[v].forEach((c, j) => { const r = t.insertRow(); r.className = im.labels.includes(c) ? 'ok' : '';
    r.insertCell().textContent = (j + 1) + '.'; r.insertCell().innerHTML = cls(c); r.insertCell().textContent = (100 * im.prob5[v][j]).toFixed(1) + '%'; });
}
function drawList(){
  const list = document.getElementById('list'); list.innerHTML = '';
  D.images.forEach((im, i) => {
    if (!im.flags.includes(filter)) return;
    const card = document.createElement('div'); card.className = 'card'; card.dataset.image = String(i);
    const th = document.createElement('img'); th.className = 'thumb'; th.src = im.thumb; th.alt = im.id; card.appendChild(th);
    const meta = document.createElement('div'); meta.className = 'meta';
    const oc = im.one_crop === null ? 'no 1-crop view in this grid' : '1-crop: <span class="' + (im.one_crop_ok ? 'ok' : 'bad') + '">' + cls(im.one_crop) + '</span>';
    const nRight = im.grid.split('1').length - 1;
    meta.innerHTML = '<b>' + esc(im.id.split('/').pop()) + '</b><br>label: ' + im.labels.map(cls).join(', ') + '<br>' + oc + '<br><span class="muted">' + nRight + ' of ' + nV + ' views right</span>';
    card.appendChild(meta);
    const g = document.createElement('div'); g.className = 'vgrid'; g.style.gridTemplateColumns = 'repeat(' + nA + ', 9px)';
    for (let v = 0; v < nV; v++) { const c = document.createElement('div'); c.className = 'cell ' + (im.grid[v] === '1' ? 'r' : 'w');
      c.dataset.view = String(v); c.title = viewName(v); c.onclick = () => show(i, v, c); g.appendChild(c); }
    card.appendChild(g); list.appendChild(card);
  });
}
drawFilters(); drawList();
</script></body></html>
"""

__all__ = ["write_explorer", "image_flags", "FILTERS"]
