using System.Runtime.InteropServices;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// The address range of the calling thread's stack, where the C library tells it (glibc on Linux): a
/// writer's gate recognises its thread by where its stack is, with two compares and no call.
/// </summary>
internal static unsafe partial class ThreadStack
{
    /// <summary>Stacks larger than this (an unlimited main-thread stack) are not used for recognition.</summary>
    private const ulong MaxUsableSize = 64UL << 20;

    private static bool s_unavailable = !OperatingSystem.IsLinux();

    /// <summary>The calling thread's stack as [<paramref name="low"/>, <paramref name="low"/> + <paramref name="size"/>), or false where it cannot be read.</summary>
    public static bool TryGetCurrent(out nuint low, out nuint size)
    {
        low = 0;
        size = 0;
        if (Volatile.Read(ref s_unavailable))
        {
            return false;
        }

        try
        {
            // pthread_attr_t is 56 bytes on x86-64 glibc and 64 on arm64: room to spare.
            byte* attributes = stackalloc byte[256];
            if (GetAttributes(Self(), attributes) != 0)
            {
                return false;
            }

            try
            {
                nint address;
                nuint length;
                if (GetStack(attributes, &address, &length) != 0 || length == 0 || length > MaxUsableSize)
                {
                    return false;
                }

                low = (nuint)address;
                size = length;
                return true;
            }
            finally
            {
                _ = DestroyAttributes(attributes);
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Volatile.Write(ref s_unavailable, true);
            return false;
        }
    }

    [LibraryImport("libc.so.6", EntryPoint = "pthread_self")]
    private static partial nint Self();

    [LibraryImport("libc.so.6", EntryPoint = "pthread_getattr_np")]
    private static partial int GetAttributes(nint thread, byte* attributes);

    [LibraryImport("libc.so.6", EntryPoint = "pthread_attr_getstack")]
    private static partial int GetStack(byte* attributes, nint* address, nuint* size);

    [LibraryImport("libc.so.6", EntryPoint = "pthread_attr_destroy")]
    private static partial int DestroyAttributes(byte* attributes);
}
