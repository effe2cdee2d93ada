using System.Diagnostics;
using System.Globalization;

namespace Monitoring.Stream.Tests.Store;

/// <summary>
/// A small tmpfs mounted on a fresh temp folder, to fill a real file system in a test; unmounted and
/// removed on dispose. Needs Linux and the right to mount (root, or CAP_SYS_ADMIN in a container): where
/// mounting is refused the test fails with the reason, it never passes without having filled a disk.
/// </summary>
internal sealed class TmpfsMount : IDisposable
{
    private static readonly TimeSpan s_commandBound = TimeSpan.FromSeconds(30);

    private TmpfsMount(string path) => Path = path;

    public string Path { get; }

    public static TmpfsMount Create(long bytes)
    {
        Assert.True(OperatingSystem.IsLinux(), "the full-disk test mounts a tmpfs, which needs Linux");
        string path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ms-tmpfs-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        (int code, string output) = Run("mount", "-t", "tmpfs", "-o", string.Create(CultureInfo.InvariantCulture, $"size={bytes}"), "tmpfs", path);
        if (code != 0)
        {
            Directory.Delete(path);
            Assert.Fail($"mounting a {bytes}-byte tmpfs on {path} was refused (exit {code}: {output.Trim()}): " +
                "the full-disk test needs root or CAP_SYS_ADMIN to mount a small file system it can fill.");
        }

        return new TmpfsMount(path);
    }

    /// <summary>Writes <paramref name="file"/> until the file system refuses another 4 KiB page; returns the bytes written.</summary>
    public static long Fill(string file)
    {
        long written = 0;
        using var stream = new FileStream(file, FileMode.Append, FileAccess.Write, FileShare.None, bufferSize: 0);
        foreach (int chunk in (int[])[1 << 16, 1 << 12])
        {
            byte[] bytes = new byte[chunk];
            try
            {
                while (true)
                {
                    stream.Write(bytes);
                    written += chunk;
                }
            }
            catch (IOException)
            {
                // Full at this granularity; try the smaller one.
            }
        }

        return written;
    }

    public void Dispose()
    {
        (int code, string output) = Run("umount", Path);
        Assert.True(code == 0, $"umount {Path} failed (exit {code}: {output.Trim()})");
        Directory.Delete(Path);
    }

    private static (int Code, string Output) Run(string command, params string[] args)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        try
        {
            using Process process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            if (!process.WaitForExit(s_commandBound))
            {
                process.Kill();
                return (-1, $"{command} did not finish within {s_commandBound}");
            }

            return (process.ExitCode, output);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, $"{command} could not be started: {e.Message}");
        }
    }
}
