namespace MiniGpt.Train;

/// <summary>
/// The --out folder of a report verb (patch, circuits), checked before the analysis runs: an analysis of minutes
/// must not end in "cannot write there", and a failed write must not be the first sign that --out was wrong.
/// </summary>
public static class ReportFolder
{
    /// <summary>
    /// dir, created if missing and shown writable by creating and deleting a file in it (UserError otherwise: a file,
    /// a path under a file, a read-only or virtual folder such as /proc). created says whether this call made it, so a
    /// verb that then fails can remove the empty folder again.
    /// </summary>
    public static string Prepare(string dir, out bool created)
    {
        if (File.Exists(dir)) throw new UserError($"--out '{dir}' is a file: give a folder for the report");
        created = !Directory.Exists(dir);
        try
        {
            Directory.CreateDirectory(dir);
            string probe = Path.Combine(dir, $".minigpt-write-test.{Environment.ProcessId}");
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new UserError($"--out '{dir}' cannot hold the report ({e.Message.TrimEnd('.')}): give a folder you can write to");
        }
        return dir;
    }

    /// <summary>Removes dir if Prepare created it and nothing was written into it (the verb failed before its report).</summary>
    public static void RemoveIfUnused(string dir, bool created)
    {
        try { if (created && Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
