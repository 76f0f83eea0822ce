using System.Globalization;
using System.Net;
using System.Text;
using MiniGpt.Circuits;

namespace MiniGpt.Train.Report;

/// <summary>
/// report.html: one self-contained page (every PNG embedded as a base64 data URI, CSS and JavaScript inline
/// (<see cref="ReportScript"/>), no external resource), so it can be mailed or opened offline. Sections: the
/// model, the headline findings, the heads table (sortable, as every table with a header row), the interactive
/// attention view of every head on one window of the data (<see cref="AttentionWindow"/>: hover a token, click a
/// head in the grid) beside the PNGs of the chosen heads on a repeated random sequence, eigenvalues,
/// composition, in-context loss, ablations, the model-size-specific analyses (skip-trigrams, bigram KL,
/// path expansion), geometry, and the scores over training when the run was tracked.
/// </summary>
public static class HtmlReport
{
    /// <summary>The report's stylesheet, shared with patch.html so a section looks the same in either page.</summary>
    public const string Css = """
            body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; padding: 0 16px; }
            h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 20px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
            table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
            th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; } th { background: #f4f4f4; }
            td.l, th.l { text-align: left; } tr.hit td { background: #fff8e1; }
            .role { display: inline-block; border-radius: 4px; padding: 1px 6px; margin: 1px; font-size: 12px; color: #fff; }
            .headline .lead { margin-bottom: 6px; } .headline { background: #f0fff4; border: 1px solid #9ae6b4; padding: 10px 14px; border-radius: 6px; font-size: 16px; }
            .notes { color: #555; font-size: 13px; } .grid { display: flex; flex-wrap: wrap; gap: 8px; }
            figure { margin: 4px; } figure.plot img { max-width: 100%; } figcaption { font-size: 12px; color: #555; max-width: 640px; }
            figure.small figcaption { max-width: 310px; }
            code, .tokens { font-family: "DejaVu Sans Mono", monospace; } .tokens { background: #f7f7f7; padding: 6px 8px; border-radius: 4px; word-break: break-all; }
            .bar { display: inline-block; height: 10px; background: #c53030; vertical-align: middle; }
            """;

    /// <param name="patchSection">the patching section (<see cref="PatchHtml.Section"/>), placed after the path expansion, when circuits patched the model.</param>
    /// <param name="window">every head's pattern on one window of the data, for the interactive attention view (none without it).</param>
    public static string Build(CircuitsResult r, IReadOnlyList<PlotImage> plots, string? patchSection = null, AttentionWindow? window = null)
    {
        var c = r.Config;
        var sb = new StringBuilder();
        string E(string s) => WebUtility.HtmlEncode(s);
        string F(double x, string fmt = "0.000") => double.IsFinite(x) ? x.ToString(fmt, CultureInfo.InvariantCulture) : "–";
        void Img(PlotImage p, string cls = "plot") =>
            sb.Append($"<figure class=\"{cls}\"><img alt=\"{E(p.Title)}\" src=\"data:image/png;base64,{Convert.ToBase64String(p.Png)}\"><figcaption><b>{E(p.Title)}</b>. {E(p.Caption)}</figcaption></figure>\n");
        IEnumerable<PlotImage> Plots(string prefix) => plots.Where(p => p.FileName.StartsWith(prefix, StringComparison.Ordinal));

        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Circuits: ").Append(E(Path.GetFileName(r.Checkpoint))).Append("</title>\n<style>\n");
        sb.Append(Css);
        // one colour per role, in registry order
        var roles = r.ScoreSet.RoleScores.Select(x => x.Role!.Name).ToList();
        for (int i = 0; i < roles.Count; i++) sb.Append($".role.{RoleClass(roles[i])} {{ background: {RoleColours[i % RoleColours.Length]}; }}\n");
        sb.Append(ViewCss);
        sb.Append("</style>\n<script>\n").Append(ReportScript.ErrorTrap).Append("\n</script></head><body>\n");
        sb.Append($"<h1>Circuits of {E(Path.GetFileName(r.Checkpoint))}</h1>\n<p class=\"notes\">{E(Path.GetFullPath(r.Checkpoint))} · data: {E(r.Data.Description)} ({r.Data.Tokens:N0} tokens) · analysed in {r.Seconds:0.0} s</p>\n");

        // model
        sb.Append("<h2 id=\"model\">Model</h2>\n<table>");
        void Row(string k, string v) => sb.Append($"<tr><th class=\"l\">{E(k)}</th><td class=\"l\">{E(v)}</td></tr>");
        Row("layers", c.NLayers.ToString()); Row("d_model", c.DModel.ToString()); Row("heads × d_head", $"{c.NHeads} × {c.DHead}");
        Row("MLP", c.AttnOnly ? "none (attention-only)" : $"d_mlp {c.DMlp}"); Row("n_ctx", c.NCtx.ToString()); Row("d_vocab", c.DVocab.ToString());
        Row("normalization", c.NormalizationType ?? "none"); Row("positional embedding", c.PositionalEmbeddingType);
        Row("parameters", r.Parameters.ToString("N0")); Row("tokenizer", r.Text.TokenizerName ?? "none (token ids)");
        Row("weight circuits read from", r.LayerNormFolded ? "the LayerNorm-folded model" : "the weights as stored");
        sb.Append("</table>\n");
        if (r.Notes.Count > 0) sb.Append("<ul class=\"notes\">").Append(string.Concat(r.Notes.Select(n => $"<li>{E(n)}</li>"))).Append("</ul>\n");

        // headline
        if (r.Heads.Count > 0)
        {
            sb.Append("<h2 id=\"findings\">Findings</h2>\n<div class=\"headline\">");
            // what ablation says matters most comes first (CircuitsResult.Headline orders by measured effect), then the roles
            // (one clause a line: the largest single-head effect in bold, then the largest group's, then the induction head's)
            if (r.Headline is { } line)
                sb.Append("<div class=\"lead\">").Append(string.Join("<br>", line.Split("; ").Select((part, i) => i == 0 ? $"<b>{E(part)}</b>" : E(part)))).Append("</div>");
            foreach (var score in r.ScoreSet.RoleScores)
            {
                string role = score.Role!.Name;
                var list = r.WithRole(score).ToList();
                sb.Append($"<div>{RoleTag(role)} heads: ")
                  .Append(list.Count == 0 ? "none" : string.Join(", ", list.Select(h => $"<b>{h.Name}</b> ({F(h.Score(score.Name), "0.00")})"))).Append("</div>");
            }
            sb.Append("</div>\n");

            sb.Append("<h2 id=\"heads\">Heads</h2>\n<p class=\"notes\">Scores on repeated random sequences (random tokens, then the same tokens again):</p>\n<ul class=\"notes\">");
            foreach (var score in r.ScoreSet)
                sb.Append($"<li><b>{E(score.DisplayName)}</b>: {E(score.Description)}" +
                    (score.Role is { } sr ? $"; gives the role {E(sr.Name)} at ≥ {sr.Threshold.ToString(CultureInfo.InvariantCulture)}" : "") + "</li>");
            sb.Append("</ul>\n<p class=\"notes\">OV-eig: eigenvalue copying score Re(Σλ)/Σ|λ| of W_E·W_V·W_O·W_U; QK-eig: the same for W_E·W_Q·W_Kᵀ·W_Eᵀ. " +
                "zero-abl / mean-abl: ratio of the repeated-half loss with the head's hook_z zeroed / set to its mean to the clean loss. A head without a role is marked unclear.</p>\n");
            string Header(string id) => $"<table class=\"sortable\"{id}><thead><tr><th class=\"l\" title=\"click a header to sort\">head</th><th class=\"l\">role(s)</th>" +
                string.Concat(r.ScoreSet.Select(x => $"<th title=\"{E(x.Description)}\">{E(x.DisplayName)}</th>")) +
                "<th>OV-eig</th><th>QK-eig</th><th title=\"repeated-half loss with the head zero-ablated ÷ clean\">zero-abl ×</th><th title=\"repeated-half loss with the head mean-ablated ÷ clean\">mean-abl ×</th></tr></thead><tbody>\n";
            void HeadRows(IEnumerable<HeadReport> rows)
            {
                foreach (var h in rows)
                {
                    string hr = h.Roles.Length > 0 ? string.Concat(r.ScoreSet.Specific(h.Roles).Select(RoleTag)) : $"<span class=\"notes\" title=\"no score reaches a role's threshold\">{CircuitsResult.Unclear}</span>";
                    sb.Append($"<tr{(h.Roles.Length > 0 ? " class=\"hit\"" : "")}><td class=\"l\" data-v=\"{h.Layer * 10000 + h.Head}\"><b>{h.Name}</b></td><td class=\"l\">{hr}</td>" +
                        string.Concat(r.ScoreSet.Select(x => $"<td>{F(h.Score(x.Name))}</td>")) +
                        $"<td>{F(h.OvCopying, "+0.000;-0.000")}</td><td>{F(h.QkEigenScore, "+0.000;-0.000")}</td><td>{(h.Ablation.Measured ? LossChange.Factor(h.Ablation.RepeatFactor) : "–")}</td><td>{(h.Ablation.MeanMeasured ? LossChange.Factor(h.Ablation.MeanRepeatFactor) : "–")}</td></tr>\n");
                }
            }
            var shown = r.ShownHeads;
            sb.Append(Header(" id=\"heads-table\""));
            HeadRows(shown);
            sb.Append("</tbody></table>\n");
            if (shown.Count < r.Heads.Count)
            {
                // a wide model: the notable heads above, maps of every score below, and every head folded away
                sb.Append($"<p class=\"notes\">The {shown.Count} notable heads of {r.Heads.Count}: those with a role, then the top {NotableHeads.TopPerScore} of each score and of the ablation, at most {NotableHeads.Max}.</p>\n");
                sb.Append("<div class=\"grid\">");
                foreach (var p in Plots("heads_")) Img(p);
                sb.Append($"</div>\n<details><summary>All {r.Heads.Count} heads</summary>\n").Append(Header(""));
                HeadRows(r.Heads);
                sb.Append("</tbody></table>\n</details>\n");
            }
        }

        // attention patterns
        if (window != null || r.Attention != null) sb.Append("<h2 id=\"attention\">Attention patterns</h2>\n");
        if (window != null) sb.Append(AttentionView.Section(window, r));
        if (r.Attention is { } a)
        {
            sb.Append(window != null ? "<h3>The chosen heads on a repeated random sequence</h3>\n" : "")
              .Append("<p>On one sequence of ").Append(a.Half).Append(" random tokens repeated once:</p>\n<p class=\"tokens\">")
              .Append(E(r.Text.ShowAll(a.Tokens.AsSpan(0, a.Half)))).Append(" <b>|</b> ").Append(E(r.Text.ShowAll(a.Tokens.AsSpan(a.Half)))).Append("</p>\n<div class=\"grid\">");
            foreach (var p in Plots("attention_")) Img(p);
            sb.Append("</div>\n");
        }

        if (r.Heads.Count > 0)
        {
            sb.Append("<h2 id=\"eigenvalues\">Eigenvalues of the OV and QK circuits</h2>\n<p class=\"notes\">Positive real eigenvalues: the circuit maps a token to itself " +
                "(OV: the head copies what it attends to; QK: a token attends to itself). Elhage et al. 2021, “Detecting copying behaviour”. " +
                "Dots: the OV circuit W_E·W_V·W_O·W_U; triangles: the token QK circuit W_E·W_Q·W_Kᵀ·W_Eᵀ; each set divided by its largest |λ|; " +
                "the title gives each set's eigenvalue score Re(Σλ)/Σ|λ|" +
                (r.ShownHeads.Count < r.Heads.Count ? $"; drawn for the {r.ShownHeads.Count} notable heads (the maps under Heads give every head's score)" : "") + ".</p>\n<div class=\"grid\">");
            foreach (var p in Plots("eigenvalues_")) Img(p, "small");
            sb.Append("</div>\n");
        }

        if (r.Composition is not null)
        {
            sb.Append("<h2 id=\"composition\">Composition scores</h2>\n<p class=\"notes\">How much a later head's query (Q), key (K) or value (V) reads what an earlier head writes. " +
                "An induction head K-composes with a previous-token head.</p>\n<div class=\"grid\">");
            foreach (var p in Plots("composition_")) Img(p);
            sb.Append("</div>\n");
        }

        sb.Append("<h2 id=\"icl\">In-context learning</h2>\n");
        foreach (var p in Plots("loss_by_position")) Img(p);
        sb.Append($"<p>ICL score (loss at position {r.IclLate} − loss at position {r.IclEarly}): <b>{F(r.IclScore, "+0.000;-0.000")}</b> nats.</p>\n");
        if (r.IclNote is { } caveat) sb.Append($"<p class=\"notes\">{E(caveat)}</p>\n");

        if (r.Clean is { } clean && r.Heads.Count > 0)
        {
            bool pred = clean.DataRepeat is not null;
            sb.Append("<h2 id=\"ablation\">Head ablation</h2>\n<p class=\"notes\">Each head zero-ablated through a forward hook on <code>blocks.{l}.attn.hook_z</code>. " +
                "Mean-ablation sets that slice to its mean over the batch and positions of the same sequences run clean (what the head writes on average stays). " +
                "Repeated half: mean loss of predicting tokens L+1 … 2L−1 of repeated random sequences. × is ablated ÷ clean, Δ is ablated − clean in nats " +
                "(below 1× and negative: the loss fell without the head).</p>\n<table class=\"sortable\" id=\"ablation-table\"><thead><tr><th class=\"l\">head</th><th>repeated-half loss</th><th>×</th><th>Δ</th><th class=\"l\"></th><th>mean-ablated ×</th><th>data loss</th><th>×</th>" +
                (pred ? "<th>predictable positions</th><th>×</th>" : "") + "</tr></thead><tbody>\n");
            sb.Append($"<tr class=\"fixed\"><td class=\"l\"><i>clean</i></td><td>{F(clean.Repeat, "0.0000")}</td><td></td><td></td><td></td><td></td><td>{F(clean.Data, "0.0000")}</td><td></td>" +
                (pred ? $"<td>{F(clean.DataRepeat!.Value, "0.0000")}</td><td></td>" : "") + "</tr>\n");
            // by the size of the effect whatever its sign (|ln ×|: halving the loss weighs as much as doubling it), as the headline orders them
            var measured = r.HeadsByEffect;
            double maxF = measured.Count > 0 ? measured.Max(h => LossChange.Size(h.Ablation.RepeatFactor)) : 0;
            foreach (var h in measured)
            {
                var ab = h.Ablation;
                double size = LossChange.Size(ab.RepeatFactor);
                int w = maxF > 0 && double.IsFinite(size) ? (int)(120 * size / maxF) : 0;
                sb.Append($"<tr><td class=\"l\" data-v=\"{h.Layer * 10000 + h.Head}\"><b>{h.Name}</b></td><td>{F(ab.Losses.Repeat, "0.0000")}</td><td><b>{Ratio(ab.Losses.Repeat, clean.Repeat)}</b></td>" +
                    $"<td>{Delta(ab.Losses.Repeat, clean.Repeat)}</td><td class=\"l\"><span class=\"bar\" style=\"width:{w}px\"></span></td>" +
                    $"<td>{Ratio(ab.MeanLosses?.Repeat ?? double.NaN, clean.Repeat)}</td>" +
                    $"<td>{F(ab.Losses.Data, "0.0000")}</td><td>{Ratio(ab.Losses.Data, clean.Data)}</td>" +
                    (pred ? $"<td>{F(ab.Losses.DataRepeat ?? double.NaN, "0.0000")}</td><td>{Ratio(ab.Losses.DataRepeat ?? double.NaN, clean.DataRepeat!.Value)}</td>" : "") + "</tr>\n");
            }
            sb.Append("</tbody><tbody>\n"); // the groups: a second body, which sorting leaves in place
            foreach (var g in r.Groups)
            {
                var losses = g.Zero;
                sb.Append($"<tr class=\"hit\"><td class=\"l\">all {E(g.Role)}<br>({string.Join(", ", g.Heads)})</td><td>{F(losses.Repeat, "0.0000")}</td><td><b>{Ratio(losses.Repeat, clean.Repeat)}</b></td><td>{Delta(losses.Repeat, clean.Repeat)}</td><td></td>" +
                    $"<td>{Ratio(g.Mean?.Repeat ?? double.NaN, clean.Repeat)}</td>" +
                    $"<td>{F(losses.Data, "0.0000")}</td><td>{Ratio(losses.Data, clean.Data)}</td>" +
                    (pred ? $"<td>{F(losses.DataRepeat ?? double.NaN, "0.0000")}</td><td>{Ratio(losses.DataRepeat ?? double.NaN, clean.DataRepeat!.Value)}</td>" : "") + "</tr>\n");
            }
            sb.Append("</tbody></table>\n");
        }

        if (r.SkipTrigrams is { } st)
        {
            sb.Append("<h2 id=\"skip-trigrams\">Top skip-trigrams</h2>\n<p class=\"notes\">“source … destination → output”: at the destination the head attends to the source and raises the output's logit " +
                "(score = attention probability × centred OV logit; Elhage et al. 2021, one-layer models).</p>\n<div class=\"grid\">");
            foreach (var (h, top) in st)
            {
                sb.Append($"<table><tr><th colspan=\"2\" class=\"l\">L0H{h}</th></tr>");
                foreach (var t in top)
                    sb.Append($"<tr><td class=\"l\"><code>{E(r.Text.Show(t.Source))} … {E(r.Text.Show(t.Destination))} → {E(r.Text.Show(t.Output))}</code></td><td>{F(t.Score)}</td></tr>");
                sb.Append("</table>");
            }
            sb.Append("</div>\n");
        }
        if (r.BigramKl is double kl)
            sb.Append($"<h2 id=\"bigrams\">Zero-layer model vs bigrams</h2>\n<p>KL(corpus bigram distribution ‖ model) = <b>{F(kl, "0.0000")}</b> nats, weighted by how often each token occurs (add-one smoothed corpus counts).</p>\n");
        sb.Append("<h2 id=\"paths\">Path expansion</h2>\n");
        if (r.PathImportance is var (names, imp))
        {
            sb.Append("<p class=\"notes\">Loss increase when one path term (direct, single head, or virtual head L0→L1) is removed from the logits, attention patterns frozen.</p>\n<table class=\"sortable\"><thead><tr><th class=\"l\">term</th><th>Δ loss</th></tr></thead><tbody>");
            foreach (var (n, v) in names.Zip(imp).OrderByDescending(x => x.Second))
                sb.Append($"<tr><td class=\"l\"><code>{E(n)}</code></td><td>{F(v, "+0.0000;-0.0000")}</td></tr>");
            sb.Append("</tbody></table>\n");
        }
        else
            sb.Append($"<p class=\"notes\">{E(r.Notes.FirstOrDefault(n => n.StartsWith("path expansion", StringComparison.Ordinal)) ?? "not available for this model")}.</p>\n");

        if (patchSection != null) sb.Append(patchSection);

        sb.Append("<h2 id=\"geometry\">Geometry</h2>\n");
        foreach (var p in Plots("embedding_cosines")) Img(p);
        sb.Append($"<p>Coding rate R(Z) = ½·logdet(I + d/(n·ε²)·ZᵀZ) of the residual stream (ε = {r.CodingEps}, n = {r.Data.Batches[0].Inputs.Length} positions):</p>\n<table><tr><th class=\"l\">after</th><th>R (nats)</th></tr>");
        for (int i = 0; i < r.CodingRates.Length; i++)
            sb.Append($"<tr><td class=\"l\">{(i == 0 ? "embedding" : $"layer {i - 1}")}</td><td>{F(r.CodingRates[i], "0.00")}</td></tr>");
        sb.Append("</table>\n");

        if (r.Training is { } tr)
        {
            sb.Append($"<h2 id=\"training\">Over training</h2>\n<p class=\"notes\">{tr.Count} evaluations logged by <code>train --track-circuits</code>, steps {tr[0].Step}–{tr[^1].Step}.</p>\n<div class=\"grid\">");
            foreach (var p in Plots("training_")) Img(p);
            sb.Append("</div>\n");
        }
        if (window != null) sb.Append(AttentionView.Data(window, r));
        sb.Append("<script>\n").Append(ReportScript.Main).Append("\n</script>\n</body></html>\n");
        return sb.ToString();
    }

    // ablated ÷ clean with LossChange's digits (1.004×, not 1.0×), and ablated − clean in nats with its sign
    private static string Ratio(double ablated, double clean) => LossChange.Factor(ablated / clean);
    private static string Delta(double ablated, double clean) =>
        double.IsFinite(ablated - clean) ? (ablated - clean).ToString("+0.000;−0.000;0.000", CultureInfo.InvariantCulture) : "–";

    /// <summary>The attention view, the head grid and the sortable headers (classes used by <see cref="ReportScript"/>).</summary>
    internal const string ViewCss = """
            th.sort { cursor: pointer; user-select: none; } th.sort:hover { background: #e8eef7; }
            th[data-dir="asc"]::after { content: " ▲"; font-size: 10px; } th[data-dir="desc"]::after { content: " ▼"; font-size: 10px; }
            .attn-view { display: flex; gap: 20px; align-items: flex-start; flex-wrap: wrap; }
            .attn-text { flex: 1 1 560px; min-width: 360px; }
            .strip { font-family: "DejaVu Sans Mono", monospace; font-size: 14px; line-height: 1.9; background: #fafafa; border: 1px solid #e2e2e2; border-radius: 4px; padding: 6px 8px; margin: 4px 0 12px; }
            .tok { white-space: pre-wrap; padding: 1px 0; border-radius: 2px; cursor: default; }
            .tok.copy { text-decoration: underline dotted #c53030; } .tok.focus { outline: 2px solid #222; }
            #attn-info { min-height: 3em; font-size: 13px; } #attn-head { font-weight: bold; }
            #attn-big { border: 1px solid #ccc; image-rendering: pixelated; }
            #head-grid { display: grid; gap: 6px; align-items: center; justify-content: start; margin-top: 8px; }
            #head-grid .layer { font-weight: bold; font-size: 13px; padding-right: 4px; }
            .thumb { cursor: pointer; border: 2px solid transparent; border-radius: 3px; padding: 1px; }
            .thumb canvas { display: block; image-rendering: pixelated; border: 1px solid #ddd; }
            .thumb .cap { font-size: 10px; color: #444; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
            .thumb.selected { border-color: #c53030; } .thumb:hover { border-color: #888; }
            .strip.sep .tok { box-shadow: inset -1px 0 #c8c8c8; }
            """;

    /// <summary>Background colours of the role tags, given to the roles in registry order (blue, grey and red for previous-token, duplicate-token and induction).</summary>
    private static readonly string[] RoleColours = ["#2b6cb0", "#718096", "#c53030", "#2f855a", "#b7791f", "#6b46c1", "#c05621", "#2c7a7b"];

    /// <summary>A role as a CSS class: letters, digits and '-' (role names are free text).</summary>
    private static string RoleClass(string role) => "role-" + new string(role.Select(ch => char.IsAsciiLetterOrDigit(ch) ? char.ToLowerInvariant(ch) : '-').ToArray());

    private static string RoleTag(string role) => $"<span class=\"role {RoleClass(role)}\">{WebUtility.HtmlEncode(role)}</span>";
}
