namespace Monitoring.Stream.Browser.Tests;

/// <summary>Where the executable under test and the test artifacts are, found from the test assembly's folder.</summary>
internal static class RepositoryPaths
{
    /// <summary>The checkout's root (the folder holding Monitoring.Stream.sln).</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The build configuration the tests were built in (Release or Debug), read from the output path.</summary>
    public static string Configuration { get; } = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";

    /// <summary>The service's dll, built beside the tests by the project reference.</summary>
    public static string ServerDll => Path.Combine(Root, "src", "Monitoring.Stream.Server", "bin", Configuration, "net10.0", "monitoring-stream.dll");

    /// <summary>Screenshots go to artifacts/browser under the root (not committed).</summary>
    public static string Screenshots
    {
        get
        {
            string path = Path.Combine(Root, "artifacts", "browser");
            Directory.CreateDirectory(path);
            return path;
        }
    }

    private static string FindRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Monitoring.Stream.sln")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException($"No Monitoring.Stream.sln above {AppContext.BaseDirectory}.");
    }
}
