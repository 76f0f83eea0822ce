using System.Diagnostics;
using MiniGpt.Circuits;
using MiniGpt.Patching;

namespace MiniGpt.Train.Report;

/// <summary>
/// The report of a circuits run on disk, the one writer that `circuits` and `train --track-circuits` use: the
/// PNG plots, circuits.json (every number) and report.html (the plots embedded) in one folder.
/// </summary>
public static class CircuitsReport
{
    /// <summary>What was written: circuits.json's text (for --json), the paths, and the number of plots.</summary>
    public sealed record Written(string Json, string JsonPath, string HtmlPath, int Plots);

    /// <param name="patch">patching of the same checkpoint (circuits of an induction-task model): its plots, its numbers under "patching" in circuits.json and its section in report.html.</param>
    /// <param name="clock">when given, the run's seconds are taken from it once the plots are drawn, so they cover the whole run.</param>
    /// <param name="window">every head's pattern on a window of the data (<see cref="AttentionWindow.Compute"/>), for report.html's interactive view.</param>
    public static Written Write(CircuitsResult r, string dir, Stopwatch? clock = null, PatchingResult? patch = null, AttentionWindow? window = null)
    {
        Directory.CreateDirectory(dir);
        var plots = ReportPlots.Draw(r);
        var patchPlots = patch != null ? PatchPlots.Draw(patch, r.Text) : [];
        if (clock != null) r.Seconds = clock.Elapsed.TotalSeconds;
        var all = plots.Concat(patchPlots).ToList();
        var jsonObject = CircuitsJson.Build(r, all);
        if (patch != null) jsonObject["patching"] = PatchJson.Build(patch, r.Checkpoint, r.Text, patchPlots);
        var json = CircuitsJson.ToJson(jsonObject);
        // plots of an earlier run (other heads drawn, other scores logged) would sit beside the new ones as if they belonged to them
        var current = plots.Select(p => p.FileName).ToHashSet();
        foreach (string old in Directory.EnumerateFiles(dir, "*.png"))
            if (ReportPlots.IsPlotName(Path.GetFileName(old)) && !current.Contains(Path.GetFileName(old))) File.Delete(old);
        foreach (var p in plots) File.WriteAllBytes(Path.Combine(dir, p.FileName), p.Png);
        PatchReport.WritePlots(patchPlots, dir); // also removes an earlier run's patch_*.png when this one did not patch
        string jsonPath = Path.Combine(dir, "circuits.json");
        File.WriteAllText(jsonPath, json + "\n");
        string html = Path.Combine(dir, "report.html");
        File.WriteAllText(html, HtmlReport.Build(r, all, patch != null ? PatchHtml.Section(patch, r.Text, patchPlots) : null, window));
        return new Written(json, jsonPath, html, all.Count);
    }
}
