// swift-tools-version:5.9
// MobileISPBench: times Core ML predictions of one model on an iPhone (or Mac) inside an XCTest.
// `mobileisp bench ART.mlpackage --device iphone` copies this package to a work folder, puts the model in
// Tests/MobileISPBenchTests/Resources/ and runs `xcodebuild test -scheme MobileISPBench -destination ...`.

import PackageDescription

let package = Package(
    name: "MobileISPBench",
    // .cpuAndNeuralEngine, Float16 multi-arrays and the async compileModel(at:) need iOS 16 / macOS 13.
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "MobileISPBench", targets: ["MobileISPBench"]),
    ],
    targets: [
        .target(name: "MobileISPBench"),
        .testTarget(
            name: "MobileISPBenchTests",
            dependencies: ["MobileISPBench"],
            // Copied as a folder: the .mlpackage stays a package and is compiled on the device at run time.
            resources: [.copy("Resources")]
        ),
    ]
)
