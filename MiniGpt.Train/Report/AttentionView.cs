using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt.Circuits;
using MiniGpt.Data;

namespace MiniGpt.Train.Report;

/// <summary>
/// The interactive attention section of report.html: the markup <see cref="ReportScript"/> fills (two copies of
/// the window's text, the selected head's pattern as a canvas, the grid of every head) and the window's data as
/// JSON in a &lt;script type="application/json"&gt; element (System.Text.Json escapes &lt;, &gt; and &amp;, so a
/// token such as "&lt;/script&gt;" cannot end it).
/// </summary>
public static class AttentionView
{
    public static string Section(AttentionWindow w, CircuitsResult r)
    {
        bool task = w.Predictable != null;
        int cell = Math.Clamp(480 / w.T, 4, 24), side = cell * w.T;
        var sb = new StringBuilder();
        sb.Append("<p>Every head on one window of the data (").Append(System.Net.WebUtility.HtmlEncode(r.Data.Description)).Append(", ").Append(w.Where).Append(task
            ? "; the induction task's data is random tokens with a copied span, the tokens whose next token is a predictable copy dotted-underlined"
            : "; tokens as text").Append("). ")
          .Append("<b>Hover a token</b>: the upper copy colours what it attends to (its row A[i, ·] of the pattern, blue), the lower what attends to it " +
                  "(its column A[·, i], orange); colour intensity is the attention weight. <b>Click a head</b> in the grid to select it; " +
                  "a link ending in <code>#L1H2@12</code> opens head L1H2 with token 12 hovered.</p>\n");
        sb.Append("<div class=\"attn-view\" id=\"attn-view\"><div class=\"attn-text\"><div>Head <span id=\"attn-head\"></span></div>\n")
          .Append($"<div class=\"notes\">attends to (blue):</div><div class=\"strip{(Separated(r.Text) ? " sep" : "")}\" id=\"attn-to\"></div>\n")
          .Append($"<div class=\"notes\">attended to by (orange):</div><div class=\"strip{(Separated(r.Text) ? " sep" : "")}\" id=\"attn-by\"></div>\n")
          .Append("<div id=\"attn-info\"></div></div>\n")
          .Append($"<figure><canvas id=\"attn-big\" width=\"{side}\" height=\"{side}\"></canvas><figcaption>The selected head's pattern: query (current token) down, key across, " +
                  "grey above the diagonal (masked); the hovered token's row outlined blue, its column orange.</figcaption></figure></div>\n");
        sb.Append($"<h3>All {w.Layers * w.HeadsPerLayer} heads</h3>\n<p class=\"notes\">Each head's pattern on the window above (layers down, heads across; same axes and colours as the large pattern). " +
            "<label><input type=\"checkbox\" id=\"attn-rel\"> colour each row of the grid and the large pattern relative to its largest weight</label> " +
            "(shows where each query of a diffuse head looks most; the text stays absolute).</p>\n<div id=\"head-grid\"></div>\n");
        return sb.ToString();
    }

    /// <summary>The window as JSON: shown text per token, the quantised patterns base64-encoded (see <see cref="AttentionWindow"/>), roles per head.</summary>
    public static string Data(AttentionWindow w, CircuitsResult r)
    {
        var shown = w.Tokens.Select(r.Text.Show).ToArray();
        var start = r.Attention is { Heads.Count: > 0 } a ? (a.Heads[0].Layer, a.Heads[0].Head)
            : r.HeadlineHead is { } hh ? (hh.Layer, hh.Head) : (0, 0);
        var o = new JsonObject
        {
            ["layers"] = w.Layers, ["heads"] = w.HeadsPerLayer, ["T"] = w.T,
            ["shown"] = Arr(shown.Select(s => (JsonNode?)s)),
            ["text"] = Arr(shown.Select(s => (JsonNode?)Readable(s, r.Text.HasTokenizer))),
            ["newline"] = Arr(shown.Select(s => (JsonNode?)s.Contains('↵'))),
            ["predictable"] = w.Predictable is { } p ? Arr(p.Select(x => (JsonNode?)x)) : null,
            ["roles"] = Arr(Enumerable.Range(0, w.Layers * w.HeadsPerLayer).Select(k =>
                (JsonNode?)Arr((k < r.Heads.Count ? r.ScoreSet.Specific(r.Heads[k].Roles) : []).Select(x => (JsonNode?)x)))), // the specific role of each (HeadScoreSet.Specific)
            ["start"] = Arr([(JsonNode?)start.Item1, start.Item2]),
            ["patterns"] = Convert.ToBase64String(w.Patterns),
        };
        return "<script type=\"application/json\" id=\"attn-data\">" + o.ToJsonString(new JsonSerializerOptions { WriteIndented = false }) + "</script>\n";
    }

    /// <summary>A token as it reads in running text: spaces as spaces (TokenText shows them as ␣ on axes), ids followed by a space.</summary>
    private static string Readable(string shown, bool hasTokenizer) => hasTokenizer ? shown.Replace('␣', ' ') : shown + " ";

    /// <summary>Whether tokens span several characters, so the strips mark each token's right edge.</summary>
    private static bool Separated(TokenText text) => text.HasTokenizer && text.TokenizerName != "char";

    private static JsonArray Arr(IEnumerable<JsonNode?> items) => new(items.ToArray());
}
