using System.Runtime.InteropServices;

namespace Monitoring.Stream.Store;

/// <summary>
/// Makes a folder's entries durable: after a file is created or renamed, the new name is only on disk
/// once the folder itself is flushed (POSIX <c>fsync</c> on the directory). .NET has no API for it, so
/// this opens the folder with <c>open(2)</c> and calls <c>fsync(2)</c>.
/// </summary>
internal static partial class DirectorySync
{
    private const int ReadOnly = 0; // O_RDONLY on Linux and macOS
    private const int InvalidArgument = 22; // EINVAL: the file system cannot sync a directory; nothing to do

    /// <summary>Flushes the entries of <paramref name="directory"/> to disk (a no-op on Windows, where NTFS journals them).</summary>
    public static void Flush(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS() && !OperatingSystem.IsFreeBSD())
        {
            return;
        }

        int fd = Open(directory, ReadOnly);
        if (fd < 0)
        {
            throw new IOException($"Could not open the folder '{directory}' to flush it to disk (errno {Marshal.GetLastPInvokeError()}).");
        }

        try
        {
            if (FSync(fd) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno != InvalidArgument)
                {
                    throw new IOException($"Could not flush the folder '{directory}' to disk (errno {errno}).", errno);
                }
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
