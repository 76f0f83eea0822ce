using System.Runtime.InteropServices;

namespace MiniGpt.Train;

/// <summary>
/// The checks a file that a verb is about to write must pass before any work starts, so that an output never
/// clobbers an input or something that is not a file: not one of the verb's inputs (the same path, or the same file
/// through a symbolic link), not a directory, not a device node, FIFO or socket (a copy of /dev/null would be
/// replaced by a regular file), in a folder that exists, and not an existing file unless --overwrite is given.
/// Each failure is a one-line UsageError (exit 2).
/// </summary>
public static partial class OutputFile
{
    /// <param name="option">the option's name without dashes ("grads"), for the message.</param>
    /// <param name="inputs">the files the verb reads (its checkpoint, its data), as it opens them.</param>
    public static void Check(string option, string path, bool overwrite, params string?[] inputs)
    {
        string full = Path.GetFullPath(path);
        foreach (var input in inputs)
            if (input != null && SameFile(full, Path.GetFullPath(input)))
                throw new UsageError($"--{option} '{path}' is also an input of this command: give another path, so that the input is not overwritten");
        if (Directory.Exists(full)) throw new UsageError($"--{option} '{path}' is a directory: give the path of a file");
        string? dir = Path.GetDirectoryName(full);
        if (dir != null && !Directory.Exists(dir)) throw new UsageError($"--{option} '{path}': the folder {dir} does not exist: create it or give another path");
        bool special = IsSpecial(full);
        if (!File.Exists(full) && !special) return;
        if (special) throw new UsageError($"--{option} '{path}' is not a regular file (a device node, FIFO or socket): give the path of a file");
        if (!overwrite) throw new UsageError($"--{option} '{path}' already exists: pass --overwrite to replace it, or give another path");
    }

    private static bool SameFile(string a, string b)
    {
        if (string.Equals(a, b, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal)) return true;
        if (!File.Exists(a) || !File.Exists(b)) return false;
        string ra = new FileInfo(a).ResolveLinkTarget(true)?.FullName ?? a, rb = new FileInfo(b).ResolveLinkTarget(true)?.FullName ?? b;
        return string.Equals(ra, rb, StringComparison.Ordinal);
    }

    // .NET reports a device node or FIFO as a "Normal" file, so the type comes from stat(2)'s st_mode: anything that exists
    // and is not S_IFREG. struct stat differs by architecture: st_mode is at byte 24 on x86-64 Linux and 16 on arm64 Linux
    // (the generic layout); elsewhere (Windows, macOS) or if libc has no stat symbol, nothing is called special.
    private static bool IsSpecial(string path)
    {
        if (!OperatingSystem.IsLinux()) return false;
        int offset = RuntimeInformation.ProcessArchitecture switch { Architecture.X64 => 24, Architecture.Arm64 => 16, _ => -1 };
        if (offset < 0) return false;
        var buf = new byte[256];
        try
        {
            if (stat(path, buf) != 0) return false; // does not exist (or cannot be read): File.Exists and the writer will say
        }
        catch (EntryPointNotFoundException) { return false; }
        uint mode = BitConverter.ToUInt32(buf, offset);
        const uint TypeMask = 0xF000, Regular = 0x8000;
        return (mode & TypeMask) != Regular && (mode & TypeMask) != 0x4000; // not a regular file, not a directory
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int stat(string path, byte[] buffer);
}
