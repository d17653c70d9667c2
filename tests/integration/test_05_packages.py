"""The build packages have one list, scripts/packages/build.txt, read by both scripts/deps.sh and the
Dockerfile's build stage. These tests fail when a library CMake needs is missing from that list (so the
image, built from the list alone, would not configure) or when the Dockerfile or deps.sh stops reading
it. That is how the image broke once: CMakeLists.txt gained libmariadb and SQLite, deps.sh gained
their packages, and the Dockerfile's hand-written list did not. No server is started; the container
itself is built and run by scripts/container-check.sh."""

import os
import re
import subprocess
import unittest

from apiary_harness import source_dir


def read(rel):
    with open(os.path.join(source_dir(), rel), encoding="utf-8") as f:
        return f.read()


def package_list(name):
    """The packages of scripts/packages/NAME.txt: one a line, '#' starts a comment."""
    return {line.split("#", 1)[0].strip() for line in read(f"scripts/packages/{name}.txt").splitlines()} - {""}


def cmake_packages(rel, fuzz=False):
    """Every Debian package a CMake file names: apiary_require_pkg(VAR module package) and the
    `apt-get install -y package...` of its not-found messages (pkg-config, node-llhttp, python3).
    The messages about APIARY_FUZZ (clang) are counted only with fuzz=True, and only they."""
    named = set()
    for line in read(rel).splitlines():
        if ("APIARY_FUZZ" in line) != fuzz:
            continue
        named |= set(re.findall(r"apiary_require_pkg\(\s*\w+\s+\S+\s+([\w.+-]+)\s*\)", line))
        for names in re.findall(r"apt-get install -y ((?:[a-z0-9][\w.+-]*\s?)+)", line):
            named |= set(names.split())
    return named


def dockerfile_stages():
    """The Dockerfile's stages as lists of logical lines (continuations joined, comments dropped)."""
    stages, line = [], ""
    for raw in read("Dockerfile").splitlines():
        if raw.lstrip().startswith("#"):
            continue
        line += raw.rstrip()
        if line.endswith("\\"):
            line = line[:-1] + " "
            continue
        if re.match(r"\s*FROM\s", line, re.I):
            stages.append([])
        if line.strip() and stages:
            stages[-1].append(line.strip())
        line = ""
    return stages


class BuildPackages(unittest.TestCase):
    def test_the_build_list_has_every_package_cmake_names(self):
        build = package_list("build")
        needed = cmake_packages("CMakeLists.txt")
        self.assertIn("libmariadb-dev", needed, "the CMakeLists.txt parser found nothing: did the format change?")
        self.assertEqual(needed - build, set(),
                         "CMakeLists.txt needs packages scripts/packages/build.txt lacks: the image would not build")

    def test_the_test_packages_are_in_the_build_or_test_list(self):
        lists = package_list("build") | package_list("test")
        needed = cmake_packages("tests/CMakeLists.txt")
        self.assertIn("libcriterion-dev", needed)
        self.assertEqual(needed - lists, set(), "tests/CMakeLists.txt needs packages no list names")

    def test_the_fuzz_list_has_the_fuzzing_compiler(self):
        needed = cmake_packages("CMakeLists.txt", fuzz=True)
        self.assertIn("clang", needed)
        self.assertEqual(needed - package_list("fuzz"), set())

    def test_deps_sh_installs_the_build_and_test_lists(self):
        out = subprocess.run([os.path.join(source_dir(), "scripts/deps.sh"), "--list"], check=True,
                             stdout=subprocess.PIPE, timeout=30).stdout.decode()
        installed = set(out.split())
        self.assertEqual((package_list("build") | package_list("test")) - installed, set())

    def test_the_image_builds_from_the_list_and_names_no_package_itself(self):
        stages = dockerfile_stages()
        self.assertGreaterEqual(len(stages), 2, "expected a build stage and a runtime stage")
        build = stages[0]
        copies = [i for i, l in enumerate(build) if re.match(r"COPY\s+scripts/packages/build\.txt\s", l)]
        self.assertTrue(copies, "the build stage does not COPY scripts/packages/build.txt")
        installs = [i for i, l in enumerate(build) if "apt-get install" in l]
        self.assertTrue(installs, "the build stage installs nothing")
        for i in installs:
            self.assertGreater(i, copies[0], "apt-get install runs before the list is copied in")
            # Whatever the stage installs comes from the list (xargs), never from names written here.
            tail = build[i].split("apt-get install", 1)[1].split("&&", 1)[0]
            words = [w for w in tail.split() if not w.startswith("-")]
            self.assertEqual(words, [], f"the build stage names packages itself: {build[i]}")
        # The runtime stage installs only what ldd found in the build stage; no -dev package there.
        for line in stages[1]:
            self.assertNotRegex(line, r"\blib[\w.+-]*-dev\b", "a -dev package in the runtime stage")


if __name__ == "__main__":
    unittest.main()
