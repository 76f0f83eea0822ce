namespace MiniGpt.Training;

/// <summary>
/// Steps per second and the ETA of a training process, measured after its first <see cref="WarmupSteps"/>
/// steps: those run while the JIT compiles the step's methods and the worker pool spins up (on the default
/// model the first step takes ~40× a later one), so a rate that included them would understate the speed
/// and overstate the ETA, most of all right after a resume. rate = (s − s₀) / (t − t₀) with (s₀, t₀) the step
/// and clock when warm-up ended; until then, the rate since the process started is all there is.
/// </summary>
public sealed class StepRate
{
    /// <summary>Steps of a process left out of its rate.</summary>
    public const int WarmupSteps = 5;

    private readonly long _startStep;
    private long _originStep;
    private double _originSeconds;

    /// <param name="startStep">the step the process started at (0, or the step of the checkpoint resumed from).</param>
    public StepRate(long startStep) { _startStep = startStep; _originStep = startStep; }

    /// <summary>Called after each step with the process clock; marks where warm-up ended. Allocates nothing.</summary>
    public void Stepped(long step, double seconds)
    {
        if (step == _startStep + WarmupSteps) { _originStep = step; _originSeconds = seconds; }
    }

    /// <summary>Steps per second at step, seconds into the process; 0 before any step.</summary>
    public double StepsPerSecond(long step, double seconds)
    {
        double dt = seconds - _originSeconds;
        long ds = step - _originStep;
        return ds > 0 && dt > 0 ? ds / dt : 0;
    }

    /// <summary>Time to reach total at the current rate; zero when the rate is not known yet.</summary>
    public TimeSpan Eta(long step, long total, double seconds)
    {
        double r = StepsPerSecond(step, seconds);
        return r > 0 ? TimeSpan.FromSeconds((total - step) / r) : TimeSpan.Zero;
    }
}
