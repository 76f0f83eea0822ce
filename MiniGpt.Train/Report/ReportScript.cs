namespace MiniGpt.Train.Report;

/// <summary>
/// The inline JavaScript of report.html (written for this page, no library): the attention view over the
/// embedded <see cref="AttentionWindow"/> (hover a token: its row A[i, ·] "attends to" and its column A[·, i]
/// "attended by" coloured across the text, intensity ∝ weight), the grid of every head (a canvas thumbnail each,
/// click to select), sortable tables, and a self-test run by report.html#selftest that the headless-Chromium test
/// reads back from the DOM.
/// </summary>
public static class ReportScript
{
    /// <summary>Runs first, in &lt;head&gt;: collects uncaught exceptions, failed loads and console.error for the self-test.</summary>
    public const string ErrorTrap = """
        window.__errors = [];
        window.addEventListener('error', function (e) { window.__errors.push(e.message || ('failed to load ' + ((e.target && (e.target.src || e.target.href)) || '?'))); }, true);
        window.addEventListener('unhandledrejection', function (e) { window.__errors.push('unhandled rejection: ' + e.reason); });
        (function () { var ce = console.error; console.error = function () { window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); }; })();
        """;

    /// <summary>The page's script, at the end of &lt;body&gt;.</summary>
    public const string Main = """
        (function () {
        'use strict';
        var dataEl = document.getElementById('attn-data');
        var D = dataEl ? JSON.parse(dataEl.textContent) : null;
        var state = { layer: 0, head: 0, focus: -1 };
        var tri = 0, bytes = null;

        // A[i][j] of head k, from the quantised lower triangles: row i of head k starts at k·T(T+1)/2 + i(i+1)/2
        function weight(k, i, j) { return j > i ? 0 : bytes[k * tri + i * (i + 1) / 2 + j] / 255; }
        function headIndex() { return state.layer * D.heads + state.head; }
        function headName(l, h) { return 'L' + l + 'H' + h; }
        // white → dark blue (attends to) or white → dark orange (attended by), linear in the weight
        function shade(w, rgb) {
          return 'rgb(' + Math.round(255 + (rgb[0] - 255) * w) + ',' + Math.round(255 + (rgb[1] - 255) * w) + ',' + Math.round(255 + (rgb[2] - 255) * w) + ')';
        }
        var BLUE = [8, 69, 148], ORANGE = [204, 76, 2];
        function ink(w) { return w > 0.55 ? '#fff' : '#111'; }

        function tokenStrip(el) {
          el.textContent = '';
          for (var i = 0; i < D.T; i++) {
            var s = document.createElement('span');
            s.className = 'tok' + (D.predictable && i > 0 && D.predictable[i - 1] ? ' copy' : '');
            s.dataset.i = i;
            s.textContent = D.text[i];
            s.title = 'position ' + i + ': ' + D.shown[i];
            el.appendChild(s);
            if (D.newline[i]) el.appendChild(document.createElement('br'));
          }
        }

        function topList(values, n) {
          var idx = [];
          for (var i = 0; i < values.length; i++) if (values[i] > 0) idx.push(i);
          idx.sort(function (a, b) { return values[b] - values[a]; });
          return idx.slice(0, n).map(function (i) { return '“' + D.shown[i] + '”@' + i + ' ' + values[i].toFixed(3); }).join(', ') || 'no token above 1/510 (the stored precision)';
        }

        function paintStrips() {
          var k = headIndex(), f = state.focus;
          var to = document.querySelectorAll('#attn-to .tok'), by = document.querySelectorAll('#attn-by .tok');
          var rowW = [], colW = [];
          for (var j = 0; j < D.T; j++) {
            var a = f < 0 ? 0 : weight(k, f, j), b = f < 0 ? 0 : weight(k, j, f);
            rowW.push(a); colW.push(b);
            to[j].style.background = shade(a, BLUE); to[j].style.color = ink(a);
            by[j].style.background = shade(b, ORANGE); by[j].style.color = ink(b);
            to[j].classList.toggle('focus', j === f); by[j].classList.toggle('focus', j === f);
          }
          var info = document.getElementById('attn-info');
          if (f < 0) info.textContent = 'Hover a token to see what it attends to (its row of the pattern) and what attends to it (its column).';
          else info.textContent = headName(state.layer, state.head) + ', “' + D.shown[f] + '” at position ' + f +
            ' attends most to ' + topList(rowW, 3) + '; is attended to most by ' + topList(colW, 3) + '.';
          drawBig();
        }

        // the largest weight of row i of head k: with "relative" ticked, the grid and the large pattern divide each row by it, so a
        // diffuse head shows where each query looks most (a head's overall maximum would not do: row 0 always puts 1 on token 0)
        function rowMax(k, i) { var m = 1, o = k * tri + i * (i + 1) / 2; for (var j = 0; j <= i; j++) if (bytes[o + j] > m) m = bytes[o + j]; return m / 255; }
        function relative() { var rel = document.getElementById('attn-rel'); return rel !== null && rel.checked; }
        function drawPattern(canvas, k) {
          var T = D.T, ctx = canvas.getContext('2d'), img = ctx.createImageData(T, T), rel = relative(), scale = 1;
          for (var i = 0; i < T; i++) {
            if (rel) scale = 1 / rowMax(k, i);
            for (var j = 0; j < T; j++) {
              var o = 4 * (i * T + j);
              if (j > i) { img.data[o] = 238; img.data[o + 1] = 238; img.data[o + 2] = 238; }
              else {
                var w = weight(k, i, j) * scale;
                img.data[o] = Math.round(255 + (BLUE[0] - 255) * w); img.data[o + 1] = Math.round(255 + (BLUE[1] - 255) * w); img.data[o + 2] = Math.round(255 + (BLUE[2] - 255) * w);
              }
              img.data[o + 3] = 255;
            }
          }
          ctx.putImageData(img, 0, 0);
        }

        function drawBig() {
          var c = document.getElementById('attn-big'), T = D.T, cell = c.width / T, ctx = c.getContext('2d');
          var off = document.createElement('canvas'); off.width = T; off.height = T;
          drawPattern(off, headIndex());
          ctx.imageSmoothingEnabled = false;
          ctx.clearRect(0, 0, c.width, c.height);
          ctx.drawImage(off, 0, 0, c.width, c.height);
          if (state.focus >= 0) {
            var f = state.focus;
            ctx.lineWidth = 2;
            ctx.strokeStyle = '#2b6cb0'; ctx.strokeRect(0, f * cell, (f + 1) * cell, cell);                 // its row: what it attends to
            ctx.strokeStyle = '#dd6b20'; ctx.strokeRect(f * cell, f * cell, cell, (T - f) * cell);           // its column: what attends to it
          }
          document.getElementById('attn-head').textContent = headName(state.layer, state.head) + (D.roles[headIndex()].length ? ' (' + D.roles[headIndex()].join(', ') + ')' : '');
        }

        function onTokenHover(e) {
          var t = e.target.closest('.tok');
          if (!t) return;
          state.focus = +t.dataset.i;
          paintStrips();
        }

        function select(l, h) {
          state.layer = l; state.head = h;
          var thumbs = document.querySelectorAll('#head-grid .thumb');
          for (var n = 0; n < thumbs.length; n++) thumbs[n].classList.toggle('selected', n === l * D.heads + h);
          paintStrips();
        }

        function buildGrid() {
          var grid = document.getElementById('head-grid');
          // thumbnails shrink with the head count so that a layer of 12 heads fits one row of the page
          var size = Math.max(56, Math.min(128, Math.floor(1200 / D.heads) - 14));
          grid.style.gridTemplateColumns = '2.5em repeat(' + D.heads + ', ' + (size + 6) + 'px)';
          for (var l = 0; l < D.layers; l++) {
            var lab = document.createElement('div'); lab.className = 'layer'; lab.textContent = 'L' + l; grid.appendChild(lab);
            for (var h = 0; h < D.heads; h++) {
              var k = l * D.heads + h, cell = document.createElement('div');
              cell.className = 'thumb'; cell.dataset.l = l; cell.dataset.h = h;
              cell.title = headName(l, h) + (D.roles[k].length ? ': ' + D.roles[k].join(', ') : ': role unclear');
              var cv = document.createElement('canvas'); cv.width = D.T; cv.height = D.T; cv.style.width = size + 'px'; cv.style.height = size + 'px';
              drawPattern(cv, k);
              var cap = document.createElement('div'); cap.className = 'cap'; cap.textContent = headName(l, h) + (D.roles[k].length ? ' · ' + D.roles[k].join(', ') : '');
              cell.appendChild(cv); cell.appendChild(cap);
              cell.addEventListener('click', function () { select(+this.dataset.l, +this.dataset.h); document.getElementById('attn-view').scrollIntoView({ block: 'nearest' }); });
              grid.appendChild(cell);
            }
          }
        }

        function bigHover(e) {
          var c = e.currentTarget, r = c.getBoundingClientRect(), i = Math.floor((e.clientY - r.top) / r.height * D.T);
          if (i >= 0 && i < D.T && i !== state.focus) { state.focus = i; paintStrips(); }
        }

        // sortable tables: click a header to sort the body rows by that column (numbers as numbers, "–" last), again to reverse
        function cellKey(td) {
          var s = td.getAttribute('data-v');
          if (s === null) s = td.textContent.trim();
          var x = parseFloat(s.replace('−', '-'));
          return isNaN(x) ? s : x;
        }
        function makeSortable(table) {
          var head = table.tHead ? table.tHead.rows[0] : null;
          if (!head || !table.tBodies.length) return;
          Array.prototype.forEach.call(head.cells, function (th, col) {
            th.classList.add('sort');
            th.addEventListener('click', function () {
              var body = table.tBodies[0], desc = th.dataset.dir === 'asc';
              Array.prototype.forEach.call(head.cells, function (o) { o.removeAttribute('data-dir'); });
              th.dataset.dir = desc ? 'desc' : 'asc';
              var rows = Array.prototype.filter.call(body.rows, function (r) { return !r.classList.contains('fixed'); });
              rows.sort(function (a, b) {
                var x = cellKey(a.cells[col]), y = cellKey(b.cells[col]);
                var nx = typeof x === 'number', ny = typeof y === 'number', c;
                if (nx !== ny) return nx ? -1 : 1; // numbers before text such as "–", either way
                c = nx ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
                return desc ? -c : c;
              });
              rows.forEach(function (r) { body.appendChild(r); });
            });
          });
        }

        function init() {
          Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), makeSortable);
          if (!D) return;
          bytes = Uint8Array.from(atob(D.patterns), function (ch) { return ch.charCodeAt(0); });
          tri = D.T * (D.T + 1) / 2;
          if (bytes.length !== D.layers * D.heads * tri) throw new Error('attention data: ' + bytes.length + ' bytes, expected ' + D.layers * D.heads * tri);
          tokenStrip(document.getElementById('attn-to'));
          tokenStrip(document.getElementById('attn-by'));
          ['attn-to', 'attn-by'].forEach(function (id) { document.getElementById(id).addEventListener('mouseover', onTokenHover); });
          document.getElementById('attn-big').addEventListener('mousemove', bigHover);
          document.getElementById('attn-rel').addEventListener('change', function () {
            var thumbs = document.querySelectorAll('#head-grid canvas');
            for (var n = 0; n < thumbs.length; n++) drawPattern(thumbs[n], n);
            drawBig();
          });
          buildGrid();
          select(D.start[0], D.start[1]);
          // report.html#L1H2@12 opens the view on head L1H2 with token 12 hovered: a link to one observation
          var m = /^#L(\d+)H(\d+)(?:@(\d+))?$/.exec(location.hash);
          if (m && +m[1] < D.layers && +m[2] < D.heads) {
            if (m[3] !== undefined && +m[3] < D.T) state.focus = +m[3];
            select(+m[1], +m[2]);
            document.getElementById('attention').scrollIntoView();
          }
        }

        // report.html#selftest: hover, select and sort as a reader would, then write PASS or FAIL into #selftest-result
        function selftest() {
          var fail = [], checks = 0;
          function check(ok, what) { checks++; if (!ok) fail.push(what); }
          try {
            if (D) {
              check(document.querySelectorAll('#head-grid .thumb').length === D.layers * D.heads, 'the grid does not hold every head');
              var info = document.getElementById('attn-info'), toks = document.querySelectorAll('#attn-to .tok');
              var colours = function () { return Array.prototype.map.call(document.querySelectorAll('#attn-to .tok, #attn-by .tok'), function (s) { return s.style.background; }).join(';'); };
              var before = info.textContent, paintBefore = colours();
              toks[D.T - 1].dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
              check(info.textContent !== before, 'hovering the last token did not change the description');
              check(colours() !== paintBefore, 'hovering the last token did not colour the text');
              check(toks[D.T - 1].classList.contains('focus'), 'the hovered token is not marked');
              var last = colours();
              toks[0].dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
              check(colours() !== last, 'hovering the first token shows the same colours as hovering the last');
              var rel = document.getElementById('attn-rel'), big = document.getElementById('attn-big');
              var pixels = function () { return big.toDataURL(); }, abs = pixels();
              rel.checked = true; rel.dispatchEvent(new Event('change'));
              var peaked = true;
              for (var i = 0; i < D.T; i++) if (rowMax(headIndex(), i) < 1) peaked = false;
              check(peaked || pixels() !== abs, 'colouring relative to each row\'s maximum did not redraw the pattern');
              rel.checked = false; rel.dispatchEvent(new Event('change'));
              var thumbs = document.querySelectorAll('#head-grid .thumb');
              if (thumbs.length > 1) {
                var name = document.getElementById('attn-head').textContent, t = thumbs[thumbs.length - 1];
                if (name.indexOf(headName(+t.dataset.l, +t.dataset.h)) === 0) t = thumbs[0];
                t.dispatchEvent(new MouseEvent('click', { bubbles: true }));
                check(document.getElementById('attn-head').textContent.indexOf(headName(+t.dataset.l, +t.dataset.h)) === 0, 'clicking a head in the grid did not select it');
              }
            }
            var table = document.getElementById('heads-table');
            if (table && table.tBodies[0].rows.length > 1) {
              var th = table.tHead.rows[0].cells[0], body = table.tBodies[0];
              var first = body.rows[0].cells[0].textContent, lastRow = body.rows[body.rows.length - 1].cells[0].textContent;
              th.dispatchEvent(new MouseEvent('click', { bubbles: true }));
              th.dispatchEvent(new MouseEvent('click', { bubbles: true }));
              check(body.rows[0].cells[0].textContent === lastRow && body.rows[0].cells[0].textContent !== first, 'sorting the heads table by head twice did not reverse it');
            }
          } catch (e) { fail.push('exception: ' + e.message); }
          var errs = window.__errors || [];
          errs.forEach(function (e) { fail.push('error: ' + e); });
          var out = document.createElement('pre');
          out.id = 'selftest-result';
          out.textContent = fail.length ? 'FAIL ' + fail.join(' | ') : 'PASS ' + checks + ' checks';
          document.body.appendChild(out);
        }

        try { init(); } catch (e) { (window.__errors = window.__errors || []).push('init: ' + e.message); }
        if (location.hash === '#selftest') selftest();
        })();
        """;
}
