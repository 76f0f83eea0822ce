using System.Diagnostics;

namespace MiniGpt.Tests;

/// <summary>Where the tests find the repository, the shared corpus and Debian's PyTorch.</summary>
internal static class TestPaths
{
    public static string RepoRoot
    {
        get
        {
            var d = new DirectoryInfo(AppContext.BaseDirectory);
            while (d != null && !File.Exists(Path.Combine(d.FullName, "MiniGpt.sln"))) d = d.Parent;
            return d?.FullName ?? throw new InvalidOperationException("cannot find MiniGpt.sln above the test binaries");
        }
    }

    /// <summary>../shared/data/tinyshakespeare.txt beside the repository (never copied into it).</summary>
    public static string Shakespeare
    {
        get
        {
            string p = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data", "tinyshakespeare.txt"));
            if (!File.Exists(p)) throw new InvalidOperationException($"{p} is missing: the tests need ../shared beside the repository");
            return p;
        }
    }

    public static string Python => "/usr/bin/python3";
    public static string ReferenceScript => Path.Combine(AppContext.BaseDirectory, "python", "reference.py");

    public static string TempDir(string name)
    {
        string d = Path.Combine(Path.GetTempPath(), "minigpt-tests", $"{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>Runs the PyTorch reference script; throws with its stderr if it fails.</summary>
    public static void RunReference(params string[] args)
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(ReferenceScript);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["OMP_NUM_THREADS"] = "1";
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot start {Python} ({e.Message}): install Debian's python3-torch (bash .ci/run does)");
        }
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"reference.py {string.Join(' ', args)} failed ({p.ExitCode}): {err}");
    }

    /// <summary>Runs a CLI verb in-process, returning exit code, stdout and stderr.</summary>
    public static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = MiniGpt.Train.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>A user mistake's report: the exit code, and one line "error: …" on stderr holding fragment, with no stack trace.</summary>
    public static void AssertOneLineError((int Code, string Out, string Err) r, int code, string fragment)
    {
        Xunit.Assert.True(code == r.Code, $"exit {r.Code}, stdout: {r.Out}, stderr: {r.Err}");
        string err = r.Err.TrimEnd('\n', '\r');
        Xunit.Assert.DoesNotContain('\n', err);
        Xunit.Assert.StartsWith("error: ", err);
        Xunit.Assert.DoesNotContain("   at ", err);
        Xunit.Assert.Contains(fragment, err);
    }
}
