namespace Monitoring.Stream.Store;

/// <summary>Thrown when a store cannot write because the disk holding its folder is full.</summary>
public sealed class StoreDiskFullException : IOException
{
    /// <summary>Creates the exception with a default message.</summary>
    public StoreDiskFullException()
        : base("The disk of the store folder is full (no space left on device).")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public StoreDiskFullException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the I/O error that reported the full disk.</summary>
    public StoreDiskFullException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for the folder <paramref name="directory"/>, naming what could not be done.</summary>
    internal static StoreDiskFullException For(string directory, string action, Exception innerException) =>
        new($"The disk holding the store folder '{directory}' is full (no space left on device): could not {action}. " +
            "Nothing was acknowledged; writes resume once space is freed.", innerException);

    /// <summary>Whether <paramref name="exception"/> (or an exception it wraps) reports a full disk or an exhausted quota.</summary>
    internal static bool IsDiskFull(Exception? exception)
    {
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            if (e is StoreDiskFullException)
            {
                return true;
            }

            if (e is IOException io)
            {
                int code = io.HResult;
                if (OperatingSystem.IsWindows())
                {
                    // HRESULT_FROM_WIN32(ERROR_DISK_FULL = 112) or (ERROR_HANDLE_DISK_FULL = 39).
                    if (code is unchecked((int)0x80070070) or unchecked((int)0x80070027))
                    {
                        return true;
                    }
                }
                else if (code == 28 || (OperatingSystem.IsLinux() && code == 122) || (OperatingSystem.IsMacOS() && code == 69))
                {
                    // On Unix .NET puts the errno in HResult: ENOSPC (28), EDQUOT (122 Linux, 69 macOS).
                    return true;
                }
            }
        }

        return false;
    }
}
