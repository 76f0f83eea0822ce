using System.Diagnostics;
using System.Text.RegularExpressions;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// Debian's chromium (/usr/bin/chromium, installed by .ci/run) run headless on a local page: the DOM after the
/// page's scripts ran (--dump-dom), from which the tests read what report.html#selftest wrote.
/// </summary>
internal static partial class HeadlessChromium
{
    /// <summary>Set to 1 to skip the browser tests on a machine without chromium; nothing else skips them.</summary>
    public const string SkipVariable = "MINIGPT_SKIP_CHROMIUM";

    public static string Binary => Environment.GetEnvironmentVariable("MINIGPT_CHROMIUM") ?? "/usr/bin/chromium";

    /// <summary>The page's DOM once loaded and its scripts run (at most a few seconds of page time).</summary>
    public static string DumpDom(string url)
    {
        if (!File.Exists(Binary))
            throw new InvalidOperationException($"{Binary} is missing: install Debian's chromium (bash .ci/run does: apt-get install chromium), " +
                $"or set {SkipVariable}=1 to skip the browser tests");
        string profile = TestPaths.TempDir("chromium-profile"); // its own profile: tests may run two browsers at once
        var psi = new ProcessStartInfo(Binary) { RedirectStandardOutput = true, RedirectStandardError = true };
        // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start; --disable-dev-shm-usage: a container's small /dev/shm crashes it
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions", $"--user-data-dir={profile}",
                     "--virtual-time-budget=5000", "--dump-dom", url })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"chromium did not finish {url} in 120 s");
        }
        string dom = stdout.Result;
        try { Directory.Delete(profile, true); } catch (IOException) { } // a helper process may still hold a file
        if (p.ExitCode != 0 || dom.Length == 0) throw new InvalidOperationException($"chromium exited {p.ExitCode} on {url}: {stderr.Result}");
        return dom;
    }

    /// <summary>What report.html#selftest wrote: "PASS n checks" or "FAIL reason | reason", null when it wrote nothing (the script did not run).</summary>
    public static string? SelfTest(string htmlPath)
    {
        string dom = DumpDom(new Uri(Path.GetFullPath(htmlPath)).AbsoluteUri + "#selftest");
        var m = Result().Match(dom);
        return m.Success ? System.Net.WebUtility.HtmlDecode(m.Groups[1].Value) : null;
    }

    [GeneratedRegex("<pre id=\"selftest-result\">([^<]*)</pre>")]
    private static partial Regex Result();
}

/// <summary>A fact that needs chromium: skipped only when <see cref="HeadlessChromium.SkipVariable"/> is 1, else it fails without the browser.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(HeadlessChromium.SkipVariable) == "1")
            Skip = $"{HeadlessChromium.SkipVariable}=1";
    }
}
