using System.Diagnostics;
using System.Runtime.InteropServices;

namespace MiniGpt.Tests;

/// <summary>Runs the minigpt console app (MiniGpt.Train.dll, copied beside the tests) as a child process, for signals and kills.</summary>
internal static class ChildTrain
{
    public static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "MiniGpt.Train.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["MINIGPT_PLAIN"] = "1";
        var p = Process.Start(psi)!;
        // drain the pipes so a chatty child never blocks on a full pipe
        p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (Out) Out.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (Out) Out.AppendLine("stderr: " + e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    /// <summary>Everything the children wrote (for failure messages).</summary>
    public static readonly System.Text.StringBuilder Out = new();

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    /// <summary>Sends signal number sig (15 SIGTERM: kill, timeout, systemd; 1 SIGHUP: a closed terminal).</summary>
    public static void Signal(Process p, int sig)
    {
        if (sig == 2) { Interrupt(p); return; }
        if (kill(p.Id, sig) != 0) throw new InvalidOperationException($"kill -{sig} {p.Id} failed ({Marshal.GetLastPInvokeError()})");
    }

    /// <summary>Sends SIGINT, what Ctrl-C in a terminal sends.</summary>
    public static void Interrupt(Process p)
    {
        // a child inherits ignored signals, and .NET leaves an ignored SIGINT ignored, so Ctrl-C could not reach it
        if (SigIntIgnoredHere())
            throw new InvalidOperationException("SIGINT is ignored in the test process (started with '&' by a shell without job control), " +
                                                "so the child would ignore it too: run the tests in the foreground, or under 'set -m'");
        if (kill(p.Id, 2) != 0) throw new InvalidOperationException($"kill -INT {p.Id} failed ({Marshal.GetLastPInvokeError()})");
    }

    /// <summary>Whether this process ignores SIGINT (bit 2 of SigIgn in /proc/self/status).</summary>
    private static bool SigIntIgnoredHere()
    {
        if (!File.Exists("/proc/self/status")) return false;
        string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line != null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & 2) != 0;
    }

    /// <summary>Waits until cond() holds (polling every 5 ms) or the process exits; false on timeout or exit.</summary>
    public static bool WaitFor(Process p, Func<bool> cond, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (cond()) return true;
            if (p.HasExited) return cond();
            Thread.Sleep(5);
        }
        return false;
    }
}
