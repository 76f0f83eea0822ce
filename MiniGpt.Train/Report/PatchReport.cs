using MiniGpt.Data;
using MiniGpt.Patching;

namespace MiniGpt.Train.Report;

/// <summary>
/// The patch verb's report on disk: the PNGs, patch.json (every number) and patch.html (the plots embedded)
/// in one folder, each file written whole or not at all (<see cref="AtomicFile"/>), plots of an earlier run that
/// this one did not draw removed, and patch.json written last, so a patch.json always describes the files beside it.
/// </summary>
public static class PatchReport
{
    public sealed record Written(string Json, string JsonPath, string HtmlPath, int Plots);

    /// <summary>
    /// Everything is drawn and formatted in memory first; then an earlier run's patch.json is removed, the plots and
    /// patch.html written, and patch.json last. So patch.json is on disk only beside the plots and page of its own run: a
    /// write that fails part-way (disk full) leaves a folder without patch.json, never one whose patch.json describes
    /// plots that were since deleted or redrawn.
    /// </summary>
    public static Written Write(PatchingResult r, string checkpoint, TokenText text, string dir)
    {
        var plots = PatchPlots.Draw(r, text);
        string json = CircuitsJson.ToJson(PatchJson.Build(r, checkpoint, text, plots));
        string page = PatchHtml.Page(r, checkpoint, text, plots);
        Directory.CreateDirectory(dir);
        string jsonPath = Path.Combine(dir, "patch.json");
        File.Delete(jsonPath);
        WritePlots(plots, dir);
        string html = Path.Combine(dir, "patch.html");
        AtomicFile.WriteAllText(html, page);
        AtomicFile.WriteAllText(jsonPath, json + "\n");
        return new Written(json, jsonPath, html, plots.Count);
    }

    /// <summary>Writes the plots and deletes the patch_*.png files of an earlier run that are not among them.</summary>
    public static void WritePlots(IReadOnlyList<PlotImage> plots, string dir)
    {
        var current = plots.Select(p => p.FileName).ToHashSet();
        foreach (string old in Directory.EnumerateFiles(dir, PatchPlots.Prefix + "*.png"))
            if (PatchPlots.IsPlotName(Path.GetFileName(old)) && !current.Contains(Path.GetFileName(old))) File.Delete(old);
        foreach (var p in plots) AtomicFile.Write(Path.Combine(dir, p.FileName), fs => fs.Write(p.Png));
    }
}
