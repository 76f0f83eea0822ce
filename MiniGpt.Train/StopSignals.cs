using System.Runtime.InteropServices;

namespace MiniGpt.Train;

/// <summary>
/// The signals that ask a long-running verb to stop, all treated as Ctrl-C: SIGINT (Ctrl-C), SIGTERM (what kill,
/// timeout, systemd, Docker and Slurm send) and SIGHUP (a closed terminal or SSH session). The first one is caught
/// and only recorded: the verb stops at its next safe point (train: the next step boundary, after writing its
/// checkpoint) and exits with 128 + the signal's number, as a shell reports a process the signal ended. A second
/// signal is not caught: its default action ends the process at once. What is on disk stays whole either way,
/// since checkpoints are written to a temporary file and renamed into place.
/// </summary>
public sealed class StopSignals : IDisposable
{
    private readonly PosixSignalRegistration[] _registrations;
    private int _signal; // the number of the first signal caught, 0 before any

    public StopSignals()
    {
        _registrations = [Register(PosixSignal.SIGINT, 2), Register(PosixSignal.SIGTERM, 15), Register(PosixSignal.SIGHUP, 1)];
    }

    private PosixSignalRegistration Register(PosixSignal signal, int number) => PosixSignalRegistration.Create(signal, context =>
    {
        // the first signal is caught (Cancel: no default action); any later one ends the process as the signal would
        if (Interlocked.CompareExchange(ref _signal, number, 0) == 0) context.Cancel = true;
    });

    /// <summary>Whether a stop signal has arrived.</summary>
    public bool Requested => Volatile.Read(ref _signal) != 0;

    /// <summary>The first signal's name ("SIGTERM"), or "" before any.</summary>
    public string Name => Volatile.Read(ref _signal) switch { 1 => "SIGHUP", 2 => "SIGINT", 15 => "SIGTERM", _ => "" };

    /// <summary>128 + the first signal's number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).</summary>
    public int ExitCode => 128 + Volatile.Read(ref _signal);

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
    }
}
